#!/usr/bin/env bash
# The main job on the embedded default: build, then run the quickstart experiment. The bundled orchestrator
# starts on this machine (control plane, data plane and two workers as separate processes), the loader replays 4
# minutes of the real azure-100 trace compressed 30x, everything is stopped (with a check that no sandbox
# survived), and the run is analysed: report.md, report.json and plots land in results/quickstart-<time>/run/.
# Needs only the Rust toolchain. Extra arguments go to `experiments run` (e.g. --output DIR).
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/protoc.sh
cargo build --release --locked -p orchestrator -p experiments --bins
# dirigent and trace-function are found beside the experiments binary.
"${CARGO_TARGET_DIR:-target}/release/experiments" run experiments/specs/quickstart.yaml "$@"
