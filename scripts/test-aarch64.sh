#!/usr/bin/env bash
# Runs the codec and connection tests for aarch64 under qemu-user, which is how the NEON
# unmasking kernel is checked against the byte loop on an x86-64 machine. Not part of
# .ci/run (it needs more than Rust). One-time setup on Debian/Ubuntu:
#   rustup target add aarch64-unknown-linux-gnu
#   apt-get install qemu-user gcc-aarch64-linux-gnu libc6-dev-arm64-cross
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in qemu-aarch64 aarch64-linux-gnu-gcc; do
  command -v "$tool" >/dev/null || { echo "test-aarch64: $tool not found (see the setup at the top of $0)" >&2; exit 2; }
done
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
cargo test --target aarch64-unknown-linux-gnu -p ringwire-frame -p ringwire-conn "$@"
