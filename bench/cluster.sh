# Sourced by the bench scripts: starts a cluster as users run one, `burst controller` (durable store, mutual TLS)
# and one `burst worker --slots 2`, each a process of its own, in the directory D. Certificates come from
# `burst certs init` (more of its arguments, such as clients, after B and D). Sets C (the certificates'
# directory), ADDR (the controller's address), CP and WP (the controller's and the worker's pids).
#
# Usage: start_cluster BURST_BINARY D [CERTS_INIT_ARGS...]
start_cluster() {
  local b=$1 d=$2
  shift 2
  $b certs init $d/certs --worker w1 "$@" >/dev/null
  C=$d/certs
  $b controller --listen 127.0.0.1:0 --data-dir $d/data --tls-cert $C/controller.pem --tls-key $C/controller-key.pem --tls-ca $C/ca.pem > $d/controller.out 2>$d/controller.log &
  CP=$!
  for i in $(seq 100); do [ -s $d/controller.out ] && break; sleep 0.05; done
  ADDR=$(head -1 $d/controller.out)
  $b worker --controller $ADDR --worker-id w1 --slots 2 --output-dir $d/out --listen 127.0.0.1:0 --tls-cert $C/worker-w1.pem --tls-key $C/worker-w1-key.pem --tls-ca $C/ca.pem > $d/worker.out 2>$d/worker.log &
  WP=$!
}
