#!/usr/bin/env bash
# Topics across two ringwire processes over a real broker (Redis pub/sub, NATS), against the
# same fan-out inside one process: builds ringwire and bus-bench in release, then runs
# bus-bench (which starts the brokers and the processes itself, pinned, on loopback, and
# kills them when it ends). Arguments go to bus-bench; see `bus-bench --help`.
#
#   loadtest/bus.sh                          # local, redis, nats x 100/1,000 subs x closed w=16, 1k/s, 10k/s; 3 x 5 s
#   loadtest/bus.sh --reps 1 --duration 2    # a quick look
#   loadtest/bus.sh --buses nats --subs 1000 --rates 0 --duration 20   # one long run (to profile)
#
# Needs redis-server and nats-server (Debian: apt-get install redis-server nats-server;
# nats-server lands in /usr/sbin); a bus whose broker is missing is skipped with a line.
# Output: a markdown table on stdout, JSON in loadtest/results/bus-<UTC date>.json.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-${RINGWIRE_BENCH_TARGET:-target}}"
export CARGO_TARGET_DIR="$target"
cargo build --release -q -p ringwire --bin ringwire
cargo build --release -q -p ringwire-loadtest --bin bus-bench
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
exec "$target/release/bus-bench" --ringwire "$target/release/ringwire" "$@"
