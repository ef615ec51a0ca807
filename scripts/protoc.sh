# Sourced by the scripts that build: containerd-client's build script (the containerd runtime) needs protoc, and
# unlike our own build scripts it cannot find the workspace's vendored one by itself. Without a protoc on PATH or
# in PROTOC, this points PROTOC at the binary the protoc-bin-vendored crate ships (fetched by cargo like any
# crate), so a fresh machine needs no protobuf-compiler package. x86_64 and aarch64 Linux.
if [ -z "${PROTOC:-}" ] && ! command -v protoc >/dev/null 2>&1; then
  cargo fetch --locked >/dev/null
  case "$(uname -m)" in
    aarch64) protoc_arch=linux-aarch_64 ;;
    *) protoc_arch=linux-x86_64 ;;
  esac
  PROTOC=$(find "${CARGO_HOME:-$HOME/.cargo}/registry/src" -path "*/protoc-bin-vendored-$protoc_arch-*/bin/protoc" \
    -type f 2>/dev/null | sort | tail -n 1)
  if [ -z "$PROTOC" ]; then
    echo "no protoc found: install protobuf-compiler or set PROTOC" >&2
    exit 1
  fi
  chmod +x "$PROTOC" 2>/dev/null || true
  export PROTOC
fi
