#!/usr/bin/env bash
# The whole test suite. Installs and starts what the tests need by itself:
#   - protoc comes from the protoc-bin-vendored crate;
#   - ansible-core (apt-get, as root) and ansible-lint (pinned, PyPI, venv under target/) for the playbook checks;
#   - python3 and python3-venv (apt-get, as root, when `python3 -m venv` cannot work) for those venvs;
#   - moto[server] (pinned, PyPI, venv under target/), the AWS Lambda emulator loader/tests/lambda_moto.rs starts;
#   - redis-server (apt-get, as root, when missing): orchestrator/tests/store_contract.rs runs the Redis registry
#     store against its own redis-server on a free loopback port (and fails saying "install redis-server" without);
#   - openssh-server (apt-get, as root, when sshd is missing): experiments/tests/ssh_localhost.rs starts its own sshd
#     on a free port of 127.0.0.1 as the user running the tests (no root needed once it is installed);
#   - the root-only tests bring up their own cluster of network namespaces with one sshd each, and
#     scripts/test-cluster.sh installs openssh-server, iproute2 and procps when missing; the Ansible test installs
#     the packages the playbooks want (containerd, runc, iptables);
#   - containerd, runc, crun, containernetworking-plugins (CNI) and iproute2 (apt-get, as root, when missing) for the
#     containerd runtime's tests (orchestrator/tests/containerd.rs and its runtime contract), which start their own
#     containerd under temporary folders and need root;
#   - protoc for containerd-client's build script: scripts/protoc.sh points PROTOC at the vendored one.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/protoc.sh

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
# `python3 -m venv` needs the venv module and ensurepip, which Debian ships apart (python3-venv).
if [ "$(id -u)" = 0 ] && ! { python3 -m venv --help >/dev/null 2>&1 && python3 -c 'import ensurepip' 2>/dev/null; }; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 python3-venv
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
# Without it that test fails, so a failed install stops the script here, saying why (`set -e` does not stop inside
# an && list). Reinstalled when the venv holds another version than the pin.
MOTO_VENV=${CARGO_TARGET_DIR:-$PWD/target}/moto-venv
MOTO_VERSION=5.2.5
MOTO_PIN="moto[server]==$MOTO_VERSION"
moto_installed() {
  [ -x "$MOTO_VENV/bin/moto_server" ] &&
    [ "$("$MOTO_VENV/bin/pip" show moto 2>/dev/null | sed -n 's/^Version: //p')" = "$MOTO_VERSION" ]
}
if ! moto_installed; then
  if ! { python3 -m venv "$MOTO_VENV" && "$MOTO_VENV/bin/pip" install -q "$MOTO_PIN"; }; then
    echo "installing $MOTO_PIN into $MOTO_VENV failed (needs python3 with venv and PyPI access):" \
      "loader/tests/lambda_moto.rs cannot run" >&2
    exit 1
  fi
fi
# sshd and its SFTP server for experiments/tests/ssh_localhost.rs (the test fails saying so when they are missing).
if [ "$(id -u)" = 0 ] && ! { [ -x /usr/sbin/sshd ] && [ -x /usr/lib/openssh/sftp-server ]; }; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openssh-server
fi
# redis-server for the Redis registry store's contract tests (each starts its own on a free port, no daemon).
if [ "$(id -u)" = 0 ] && ! command -v redis-server >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server
fi
# containerd and its OCI runtimes and CNI plugins for the containerd runtime's root-only tests.
if [ "$(id -u)" = 0 ] && ! { command -v containerd >/dev/null && command -v ctr >/dev/null && command -v runc >/dev/null &&
  command -v crun >/dev/null && [ -x /usr/lib/cni/bridge ] && [ -x /usr/lib/cni/host-local ] && command -v ip >/dev/null; }; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    containerd runc crun containernetworking-plugins iproute2
fi
cargo test --workspace --locked
# Root only: network namespaces and sshd (the test says so and fails when run without root).
if [ "$(id -u)" = 0 ]; then
  # Every #[ignore]d test of experiments needs root and a namespace cluster; they run here.
  cargo test --locked -p experiments --tests -- --ignored
  # The containerd runtime's tests (its runtime contract, a cold start into a real container) need root.
  cargo test --locked -p orchestrator --tests -- --ignored
else
  echo "not root: skipping the SSH cluster test (it needs network namespaces)" >&2
fi
