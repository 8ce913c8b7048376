#!/usr/bin/env bash
# Fair share under a flood (issue 20), as users run burst: `burst controller` (durable store, mutual TLS) and one
# `burst worker --slots 2` as processes; alice (a client certificate) submits FLOOD x /bin/true at once, then a
# second submitter submits one /bin/true every 100 ms, SMALL of them, while the flood runs. Prints one JSON line:
# the small submitter's queue waits (submit -> start, from the jobs' statuses), and the flood's span and rate.
#
# Usage: bench/fair-share.sh [BURST_BINARY] [FLOOD] [SMALL] [SMALL_SUBMITTER]
#   BURST_BINARY     default target/release/burst
#   SMALL_SUBMITTER  bob (another submitter, priority 0: fair share) or admin (the same at --priority 10)
set -euo pipefail
B=${1:-target/release/burst}; FLOOD=${2:-20000}; SMALL=${3:-30}; WHO=${4:-bob}
B=$(realpath "$B")
D=$(mktemp -d)
. "$(dirname "$0")/cluster.sh"
start_cluster $B $D --client alice=submit --client bob=submit --client admin=admin
trap 'kill $CP $WP 2>/dev/null; wait 2>/dev/null; rm -rf $D' EXIT
as() { local u=$1; shift; BURST_CONTROLLER=https://$ADDR BURST_TLS_CA=$C/ca.pem BURST_TLS_CERT=$C/$u.pem BURST_TLS_KEY=$C/$u-key.pem $B "$@"; }
for i in $(seq 100); do as admin workers -o name 2>/dev/null | grep -q w1 && break; sleep 0.05; done
t0=$(date +%s.%N)
as alice submit --count $FLOOD process /bin/true > $D/alice.ids
t1=$(date +%s.%N)
extra=""; [ "$WHO" = admin ] && extra="--priority 10"
for i in $(seq $SMALL); do as $WHO submit $extra process /bin/true >> $D/small.ids; sleep 0.1; done
as admin wait $(cat $D/small.ids) > /dev/null
t2=$(date +%s.%N)
as admin wait $(tail -1 $D/alice.ids) > /dev/null 2>&1 || true
t3=$(date +%s.%N)
as admin status -o json $(cat $D/small.ids) > $D/small.json
python3 - $D/small.json $t0 $t1 $t2 $t3 $FLOOD <<'PY'
import json, sys
jobs = json.load(open(sys.argv[1]))
t0, t1, t2, t3 = map(float, sys.argv[2:6])
waits = sorted(int(j.get("started_at_ms", 0)) - int(j["submitted_at_ms"]) for j in jobs)
p = lambda q: waits[min(len(waits) - 1, max(0, -(-q * len(waits) // 100) - 1))]
print(json.dumps({"small_jobs": len(waits), "wait_p50_ms": p(50), "wait_p99_ms": p(99), "wait_max_ms": waits[-1],
                  "flood_submit_s": round(t1 - t0, 2), "flood_span_s": round(t3 - t0, 2), "flood_jobs_per_s": round(int(sys.argv[6]) / (t3 - t0))}))
PY
