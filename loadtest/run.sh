#!/usr/bin/env bash
# Builds the load harness, the peers and (when present) ringwire and the raw TCP echo
# floor in release, installs the JavaScript peers with npm when npm is there, raises the
# open-file limit, then runs every scenario: `loadtest/run.sh [bench-all options]`.
# Examples:
#   loadtest/run.sh                      # full run: 10 s x 3 repetitions per scenario and server
#   loadtest/run.sh --smoke              # 2 s x 1, idle 2,000: proves everything works
#   loadtest/run.sh --servers ringwire,fastwebsockets --scenarios echo-small
#   loadtest/run.sh --smoke --scenarios deflate-1k,deflate-16k,broadcast-deflate,idle-deflate,idle-deflate-64
# Results: loadtest/results/latest.{json,md,svg}; server logs in loadtest/results/logs/.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
# Release binaries go to the workspace's own target/ unless RINGWIRE_BENCH_TARGET says otherwise.
export CARGO_TARGET_DIR="${RINGWIRE_BENCH_TARGET:-$repo/target}"
note() { echo "[run.sh] $*" >&2; }

# 50,000 idle connections need 50,000+ descriptors in both the server and the generator.
want=200000
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$want" ]; then
  ulimit -n "$want" 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true
fi
note "open-file limit: $(ulimit -n)"

note "building the harness and peers (release)"
cargo build --release -p ringwire-loadtest --bins

if [ -d crates/ringwire/src/bin/ringwire ]; then
  cargo build --release -p ringwire --bin ringwire || note "ringwire binary failed to build: ringwire is not run"
else
  note "no ringwire binary yet (crates/ringwire/src/bin/ringwire): ringwire is not run"
fi
if [ -f crates/io/examples/tcp_echo.rs ] || [ -d crates/io/examples/tcp_echo ]; then
  cargo build --release -p ringwire-io --example tcp_echo || note "tcp_echo failed to build: no TCP floor"
else
  note "no crates/io/examples/tcp_echo yet: no raw TCP floor"
fi

if command -v npm >/dev/null 2>&1; then
  peers="$repo/loadtest/.peers"
  mkdir -p "$peers"
  bunpkg=@oven/bun-linux-x64
  grep -q avx2 /proc/cpuinfo || bunpkg=@oven/bun-linux-x64-baseline
  if [ ! -e "$peers/node_modules/ws/package.json" ] || [ ! -e "$peers/node_modules/$bunpkg/bin/bun" ]; then
    note "installing ws and $bunpkg with npm into $peers"
    (cd "$peers" && npm install --no-audit --no-fund --no-save --loglevel=error ws@8 "$bunpkg") \
      || note "npm install failed: Bun and Node ws peers are skipped"
  fi
else
  note "npm not found: Bun and Node ws peers are skipped"
fi

exec "$CARGO_TARGET_DIR/release/bench-all" --repo "$repo" --bin-dir "$CARGO_TARGET_DIR/release" "$@"
