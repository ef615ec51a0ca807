#!/usr/bin/env bash
# The main job on the embedded default: build, start `dirigent standalone` (control plane, data plane and two
# workers in one process), register the bundled workload function with one curl, invoke it cold then warm,
# print what came back, replay a few compressed minutes of the azure-100 trace with the loader into results/,
# and stop everything. Needs only the Rust toolchain (curl is installed if missing).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v curl >/dev/null; then
  echo "installing curl" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl >/dev/null
fi

cargo build --release --locked -p orchestrator -p loader --bins
bin="$PWD/target/release"
workdir=$(mktemp -d)
dirigent_pid=""
cleanup() {
  if [ -n "$dirigent_pid" ] && kill -0 "$dirigent_pid" 2>/dev/null; then
    kill -TERM "$dirigent_pid"
    wait "$dirigent_pid" || true
  fi
  rm -rf "$workdir"
}
trap cleanup EXIT INT TERM

RUST_LOG=${RUST_LOG:-warn} "$bin/dirigent" standalone >"$workdir/ready" 2>"$workdir/dirigent.log" &
dirigent_pid=$!
# Wait for the ready line dirigent prints once every role has registered (it exits on failure).
for _ in $(seq 1 300); do
  grep -q '"ready"' "$workdir/ready" && break
  kill -0 "$dirigent_pid" 2>/dev/null || { cat "$workdir/dirigent.log" >&2; exit 1; }
  sleep 0.05
done
grep -q '"ready"' "$workdir/ready" || { echo "dirigent did not become ready" >&2; cat "$workdir/dirigent.log" >&2; exit 1; }
echo "== dirigent standalone is up: $(cat "$workdir/ready")"

echo "== register: curl -X POST localhost:9091/registerService -d name=hello -d image=trace-function ..."
curl -sS --fail-with-body -X POST localhost:9091/registerService \
  -d name=hello -d image=trace-function -d port_forwarding=80 -d port_forwarding=tcp \
  -d requested_cpu=100 -d requested_memory=64 -d scaling_lower_bound=0 -d scaling_upper_bound=4
echo "  (the reply lists the data planes' proxy addresses)"

for attempt in cold warm; do
  echo "== $attempt invocation: curl -H 'Host: hello' -H 'requested_cpu: 25' localhost:8080/"
  curl -sS --fail-with-body -D - -H 'Host: hello' -H 'requested_cpu: 25' localhost:8080/ | grep -iv '^date:'
  echo
done

echo "== the function's state: curl localhost:9091/v1/functions/hello"
curl -sS --fail-with-body localhost:9091/v1/functions/hello
echo
results="results/quickstart-$(date -u +%Y%m%dT%H%M%SZ)"
echo "== replay 3 minutes of the azure-100 trace, compressed to 3 s: loader run --config loader/config/quickstart.yaml"
"$bin/loader" run --config loader/config/quickstart.yaml --output "$results"
echo "  first rows of $results/invocations.csv:"
head -n 4 "$results/invocations.csv" | sed 's/^/    /'
echo "  $results also holds summary.json (percentiles per function and overall) and manifest.json"
echo "== stopping (every sandbox process is killed with the workers)"
