#!/usr/bin/env bash
# The whole test suite. Installs and starts what the tests need by itself; today that is nothing beyond
# the Rust toolchain (protoc comes from the protoc-bin-vendored crate), later issues add sshd, containerd,
# Redis and moto here.
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
