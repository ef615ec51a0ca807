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
# Ansible playbooks (ansible/): syntax check with ansible-core (installed when missing, as root), then ansible-lint
# (pinned, from PyPI into a venv under target/; skipped with a message when it cannot be installed).
if ! command -v ansible-playbook >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ansible-core
fi
if command -v ansible-playbook >/dev/null 2>&1; then
  ansible-playbook --syntax-check -i localhost, ansible/site.yml
  ANSIBLE_LINT_VENV=${CARGO_TARGET_DIR:-$PWD/target}/ansible-lint-venv
  if [ -x "$ANSIBLE_LINT_VENV/bin/ansible-lint" ] ||
    { python3 -m venv "$ANSIBLE_LINT_VENV" && "$ANSIBLE_LINT_VENV/bin/pip" install -q "ansible-lint==26.10.1"; }; then
    (cd ansible && PATH="$ANSIBLE_LINT_VENV/bin:$PATH" ansible-lint --offline site.yml)
  else
    echo "ansible-lint could not be installed into $ANSIBLE_LINT_VENV: skipping it" >&2
  fi
else
  echo "ansible-playbook is not installed (not root, so not installed here): skipping the playbook checks" >&2
fi
# moto (the AWS Lambda API emulator) for loader/tests/lambda_moto.rs, from PyPI into a venv under target/.
MOTO_VENV=${CARGO_TARGET_DIR:-$PWD/target}/moto-venv
if [ ! -x "$MOTO_VENV/bin/moto_server" ]; then
  python3 -m venv "$MOTO_VENV" && "$MOTO_VENV/bin/pip" install -q "moto[server]"
fi
cargo test --workspace --locked
# Root only: network namespaces and sshd (the test says so and fails when run without root).
if [ "$(id -u)" = 0 ]; then
  # Every #[ignore]d test of experiments needs root and a namespace cluster; they run here.
  cargo test --locked -p experiments --tests -- --ignored
else
  echo "not root: skipping the SSH cluster test (it needs network namespaces)" >&2
fi
