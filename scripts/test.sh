#!/usr/bin/env bash
# The whole test suite. Installs and starts what the tests need by itself: protoc comes from the
# protoc-bin-vendored crate; the SSH tests bring up their own cluster of network namespaces with one sshd each
# (scripts/test-cluster.sh installs openssh-server when missing). Later issues add containerd, Redis and moto.
set -euo pipefail
cd "$(dirname "$0")/.."

if cargo fmt --version >/dev/null 2>&1; then
  cargo fmt --all -- --check
else
  echo "rustfmt is not installed: skipping the format check" >&2
fi
if cargo clippy --version >/dev/null 2>&1; then
  cargo clippy --workspace --all-targets --locked -- -D warnings
else
  echo "clippy is not installed: skipping lints" >&2
fi
cargo test --workspace --locked
# Root only: network namespaces and sshd (the test says so and fails when run without root).
if [ "$(id -u)" = 0 ]; then
  # Every #[ignore]d test of experiments needs root and a namespace cluster; they run here.
  cargo test --locked -p experiments --tests -- --ignored
else
  echo "not root: skipping the SSH cluster test (it needs network namespaces)" >&2
fi
