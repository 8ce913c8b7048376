#!/usr/bin/env bash
# burst on a local kind cluster (kind-config.yaml: one control plane, two workers).
#
#   deploy/kind.sh up     create the kind cluster if absent, build the burst:local image, load it into the
#                         cluster and install (or upgrade) the chart into burst-system
#   deploy/kind.sh e2e    up, then the BurstCluster of deploy/examples/burstcluster.yaml and the BurstJobs of
#                         deploy/examples/burstjob{,s}.yaml, waiting for each job to end as it should, and
#                         reading the controller's and a worker's metrics on their http port (9090)
#   deploy/kind.sh down   delete the kind cluster
#
# Needs docker, kind, kubectl and helm (.ci/install-helm puts helm and kubectl in target/tools/bin, used when
# they are not on PATH) and, for up and e2e, cargo and busybox-static (see deploy/image.sh).
# BASE=<image> builds the image on another base (deploy/image.sh); a base with python3 lets the python job pass.
# KIND_CLUSTER (default burst) names the cluster; E2E_NAMESPACE (default default) is where e2e puts its objects.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export PATH="$PATH:$root/target/tools/bin"

cluster=${KIND_CLUSTER:-burst}
context="kind-$cluster"
image=burst:local
release=burst
release_ns=burst-system
operator_pods="app.kubernetes.io/instance=$release,app.kubernetes.io/component=operator"
e2e_ns=${E2E_NAMESPACE:-default}
# The BurstCluster condition e2e waits for, and how long each wait may take.
workers_condition=${WORKERS_CONDITION:-WorkersReady}
cluster_timeout=${CLUSTER_TIMEOUT:-180s}
job_timeout=${JOB_TIMEOUT:-120s}

say() { echo "kind.sh: $*"; }
die() {
  echo "kind.sh: $*" >&2
  exit 1
}

# Every tool in "$@" is on PATH, else one line naming all that are missing.
need() {
  local missing=() tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "kind.sh: missing: ${missing[*]}" >&2
    echo "  helm, kubectl: .ci/install-helm puts both in target/tools/bin" >&2
    echo "  kind: go install sigs.k8s.io/kind@latest (or your package manager); docker: the Docker engine" >&2
    exit 2
  fi
  if [[ " $* " == *" docker "* ]] && ! docker info >/dev/null 2>&1; then
    die "the Docker engine does not answer (docker info failed)"
  fi
}

k() { kubectl --context "$context" "$@"; }

up() {
  need docker kind kubectl helm cargo
  if kind get clusters 2>/dev/null | grep -qx "$cluster"; then
    say "kind cluster $cluster exists"
  else
    kind create cluster --name "$cluster" --config kind-config.yaml --wait 180s
  fi
  cargo build --release
  deploy/image.sh target/release/burst "$image"
  kind load docker-image "$image" --name "$cluster"

  # The operator's namespace enforces the restricted Pod Security Standard the chart is written for.
  k create namespace "$release_ns" --dry-run=client -o yaml | k apply -f - >/dev/null
  k label namespace "$release_ns" pod-security.kubernetes.io/enforce=restricted --overwrite >/dev/null
  # Helm installs crds/ on the first install only; apply them so an upgrade brings changed CRDs too.
  k apply --server-side --force-conflicts -f charts/burst/crds/ >/dev/null
  # The image's id as a pod annotation: a rebuilt image under the same tag rolls the operator out again.
  local image_id
  image_id=$(docker image inspect --format '{{.Id}}' "$image")
  helm --kube-context "$context" upgrade --install "$release" charts/burst -n "$release_ns" --create-namespace \
    --set-string "image.repository=${image%:*}" --set-string "image.tag=${image##*:}" \
    --set-string "podAnnotations.burst\.dev/image-id=$image_id" --wait --timeout 5m
  say "burst is installed on kind cluster $cluster (kubectl context $context)"
}

# What to look at when a wait fails.
diagnose() {
  echo "---- diagnostics" >&2
  k get burstclusters,burstjobs -A -o wide >&2 || true
  k -n "$e2e_ns" get pods,statefulsets,deployments,services -o wide >&2 || true
  k -n "$e2e_ns" get events --sort-by=.lastTimestamp 2>/dev/null | tail -n 20 >&2 || true
  k -n "$release_ns" logs -l "$operator_pods" --tail=40 >&2 || true
}

# Waits until BurstJob $1 reaches phase $2; on timeout says which phase it has and why.
wait_phase() {
  local job=$1 want=$2
  if k -n "$e2e_ns" wait "burstjob/$job" --for=jsonpath='{.status.phase}'="$want" --timeout="$job_timeout" >/dev/null; then
    say "burstjob/$job: $want"
    return 0
  fi
  local got
  got=$(k -n "$e2e_ns" get "burstjob/$job" -o jsonpath='{.status.phase} {.status.reason} {.status.message}' || true)
  echo "kind.sh: burstjob/$job did not reach $want within $job_timeout (status: ${got:-none})" >&2
  return 1
}

# Each role of BurstCluster $1 serves its burst_<role>_ metrics on its http port (9090), read through the API
# server's pod proxy (the cluster's NetworkPolicies leave that port open with TLS on).
check_metrics() {
  local bc=$1 role pod metrics scheme failed=0
  for role in controller worker; do
    pod=$(k -n "$e2e_ns" get pods -l "burst.dev/cluster=$bc,burst.dev/role=$role" \
      -o jsonpath='{.items[0].metadata.name}' 2>/dev/null || true)
    # The e2e cluster has TLS: its controller serves HTTPS there (the API server's proxy does not check it).
    scheme=""
    [ "$role" = controller ] && scheme="https:"
    metrics=$(k get --raw "/api/v1/namespaces/$e2e_ns/pods/${scheme}${pod:-none}:9090/proxy/metrics" 2>&1 || true)
    if grep -q "^burst_${role}_" <<<"$metrics"; then
      say "pod/$pod serves burst_${role}_* metrics on :9090"
    else
      echo "kind.sh: no burst_${role}_* metrics from pod/${pod:-none} on :9090: $(head -c 300 <<<"$metrics")" >&2
      failed=1
    fi
  done
  return "$failed"
}

# Whether the image has python3 (the default busybox one does not).
image_has_python() {
  docker run --rm --entrypoint /bin/sh "$image" -c 'command -v python3' >/dev/null 2>&1
}

e2e() {
  up
  local bc existed=false failed=0 python_phase=Succeeded
  k -n "$e2e_ns" get -f deploy/examples/burstcluster.yaml >/dev/null 2>&1 && existed=true
  k -n "$e2e_ns" apply -f deploy/examples/burstcluster.yaml
  bc=$(k -n "$e2e_ns" get -f deploy/examples/burstcluster.yaml -o jsonpath='{.metadata.name}')
  if [ "$existed" = true ]; then
    # Its pods run the image loaded by an earlier run: restart them on the new one.
    k -n "$e2e_ns" rollout restart statefulset,deployment -l "burst.dev/cluster=$bc" || true
  fi
  if ! k -n "$e2e_ns" wait "burstcluster/$bc" --for=condition="$workers_condition" --timeout="$cluster_timeout"; then
    echo "kind.sh: burstcluster/$bc is not $workers_condition within $cluster_timeout" >&2
    diagnose
    exit 1
  fi

  # Fresh jobs on every run: earlier ones (finished, or not) go first.
  k -n "$e2e_ns" delete --ignore-not-found --wait --timeout=60s \
    -f deploy/examples/burstjob.yaml -f deploy/examples/burstjobs.yaml >/dev/null
  k -n "$e2e_ns" apply -f deploy/examples/burstjob.yaml -f deploy/examples/burstjobs.yaml
  if ! image_has_python; then
    python_phase=Failed
    say "$image has no python3, so the python job is expected to fail (BASE=python:3.12-slim for one that has)"
  fi
  wait_phase hello Succeeded || failed=1
  wait_phase echo Succeeded || failed=1
  wait_phase python "$python_phase" || failed=1
  wait_phase exit-3 Failed || failed=1
  local code
  code=$(k -n "$e2e_ns" get burstjob/exit-3 -o jsonpath='{.status.exitCode}' || true)
  if [ "$code" != 3 ]; then
    echo "kind.sh: burstjob/exit-3 has exit code '${code}', not 3" >&2
    failed=1
  fi
  check_metrics "$bc" || failed=1

  k -n "$e2e_ns" get burstclusters,burstjobs -o wide
  if [ "$failed" -ne 0 ]; then
    diagnose
    die "e2e failed"
  fi
  say "e2e passed"
}

down() {
  need kind
  kind delete cluster --name "$cluster"
}

case "${1:-}" in
  up) up ;;
  e2e) e2e ;;
  down) down ;;
  *)
    echo "usage: deploy/kind.sh up|e2e|down" >&2
    exit 2
    ;;
esac
