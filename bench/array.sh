#!/usr/bin/env bash
# Job arrays against --count batches (issue 20), as users run burst: `burst controller` (durable store, mutual
# TLS) and one `burst worker --slots 2` as processes. For each of: an array of N x /bin/true, then N x /bin/true
# as a --count batch, submitted with --wait: the time until all ended, the submit calls' time (the CLI's own
# progress line; an array is one call), and the controller's resident memory (VmRSS) at the start and at its
# peak (sampled every 100 ms). Then an array of BIG indices submitted and cancelled: its submit time and the
# controller's memory with it queued. One JSON line each.
#
# Usage: bench/array.sh [BURST_BINARY] [N] [BIG]     (defaults: target/release/burst 100000 1000000)
set -euo pipefail
B=$(realpath "${1:-target/release/burst}"); N=${2:-100000}; BIG=${3:-1000000}
D=$(mktemp -d)
. "$(dirname "$0")/cluster.sh"
start_cluster $B $D
trap 'kill $CP $WP $SP 2>/dev/null; wait 2>/dev/null; rm -rf $D' EXIT
export BURST_CONTROLLER=https://$ADDR BURST_TLS_CA=$C/ca.pem BURST_TLS_CERT=$C/admin.pem BURST_TLS_KEY=$C/admin-key.pem
for i in $(seq 100); do $B workers -o name 2>/dev/null | grep -q w1 && break; sleep 0.05; done
rss() { awk '/VmRSS/ {print $2}' /proc/$CP/status; }
# The peak, sampled every 100 ms while a run goes on.
sample() { local peak=0 r; while true; do r=$(rss); [ "$r" -gt "$peak" ] && peak=$r && echo $peak > $D/peak; sleep 0.1; done; }
run() {
  local what=$1; shift
  local before=$(rss); echo $before > $D/peak
  sample & SP=$!
  local t0=$(date +%s.%N)
  "$@" > $D/ids 2> $D/progress
  local t1=$(date +%s.%N)
  kill $SP 2>/dev/null; wait $SP 2>/dev/null || true
  # `submitting: N/N (rate, T s)`, the CLI's own account of the submit calls (none for one array).
  local submit_s=$(grep -o 'submitting: [0-9]*/[0-9]* ([0-9.]*/s, [0-9.]* s)' $D/progress | tail -1 | sed 's/.*, \([0-9.]*\) s)/\1/')
  python3 -c "import json,sys; t0,t1=map(float,sys.argv[2:4]); n=int(sys.argv[4]); print(json.dumps({'run': sys.argv[1], 'jobs': n, 'submit_s': float(sys.argv[8]) if sys.argv[8] else None, 'all_ended_s': round(t1-t0,2), 'jobs_per_s': round(n/(t1-t0)), 'rss_start_mib': round(int(sys.argv[5])/1024,1), 'rss_peak_mib': round(int(sys.argv[7])/1024,1)}))" "$what" $t0 $t1 $N $before 0 $(cat $D/peak) "$submit_s"
}
run array $B submit --wait --array 0-$((N - 1)) process /bin/true
run count $B submit --wait --count $N process /bin/true
before=$(rss); t0=$(date +%s.%N)
id=$($B submit --array 0-$((BIG - 1)) process /bin/sleep 3600)
t1=$(date +%s.%N); after=$(rss)
$B cancel $id > /dev/null
python3 -c "import json,sys; print(json.dumps({'run': 'big array, submitted then cancelled', 'indices': int(sys.argv[1]), 'submit_s': round(float(sys.argv[3])-float(sys.argv[2]),3), 'rss_before_mib': round(int(sys.argv[4])/1024,1), 'rss_with_it_queued_mib': round(int(sys.argv[5])/1024,1)}))" $BIG $t0 $t1 $before $after
