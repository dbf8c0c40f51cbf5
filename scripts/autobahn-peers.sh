#!/usr/bin/env bash
# Check the Autobahn runner (kosoku) itself on sections 12 and 13 against real
# permessage-deflate peers (Node `ws`, Python `websockets`), not against ringwire:
#
#   scripts/autobahn-peers.sh server|client ws|websockets [PEER_OPTION] [-- kosoku args]
#
# server: kosoku's fuzzingclient mode against the peer's echo server; client: kosoku's
# fuzzingserver mode with the peer as the client agent. PEER_OPTION goes to the peer:
# ws THRESHOLD (a number, or `off` to echo every message uncompressed), websockets
# `--final-block`. kosoku args default to `-i 12.* -i 13.*`. KOSOKU_VENV picks the runner's
# venv (default .venv-autobahn, fixed by scripts/kosoku_fix.py as the gate does).
# Peers install under target/peers (npm and pip from their registries). Prints the wall
# time and the verdicts per section; reports in target/autobahn-peers/<mode>-<peer>[-<opt>][-$AUTOBAHN_TAG].
set -euo pipefail
mode=${1:?usage: $0 server|client ws|websockets [PEER_OPTION] [-- kosoku args]}
peer=${2:?usage: $0 server|client ws|websockets [PEER_OPTION] [-- kosoku args]}
shift 2
opt=()
if [ $# -gt 0 ] && [ "$1" != "--" ]; then opt=("$1"); shift; fi
[ "${1:-}" = "--" ] && shift
kargs=("$@"); [ ${#kargs[@]} -gt 0 ] || kargs=(-i '12.*' -i '13.*')
cd "$(dirname "$0")/.."
root=$PWD
source scripts/autobahn-common.sh
venv=${KOSOKU_VENV:-$root/.venv-autobahn}
peers=$root/target/peers
port=${AUTOBAHN_PORT:-9011}
install_kosoku "$venv"
[ -n "${KOSOKU_VENV:-}" ] || "$venv/bin/python" scripts/kosoku_fix.py
case "$peer" in
ws)
    [ -d "$peers/node/node_modules/ws" ] || { mkdir -p "$peers/node"; (cd "$peers/node" && npm install --silent --no-save ws); }
    run_peer() { NODE_PATH=$peers/node/node_modules exec node scripts/autobahn-peer-ws.js "$@" "${opt[@]}"; } ;;
websockets)
    [ -x "$peers/venv/bin/python" ] || python3 -m venv "$peers/venv"
    "$peers/venv/bin/python" -c 'import websockets' 2>/dev/null || "$peers/venv/bin/pip" install --quiet websockets
    run_peer() { exec "$peers/venv/bin/python" scripts/autobahn-peer-websockets.py "$@" "${opt[@]}"; } ;;
*) echo "unknown peer $peer (ws or websockets)" >&2; exit 2 ;;
esac
out=$root/target/autobahn-peers/$mode-$peer${opt:+-${opt[0]#--}}${AUTOBAHN_TAG:+-$AUTOBAHN_TAG}
rm -rf "$out"; mkdir -p "$out"
limit=${AUTOBAHN_TIMEOUT:-1500}
start=$SECONDS
rc=0
case "$mode" in
server)
    run_peer server "$port" >"$out/peer.log" 2>&1 &
    pids+=($!)
    wait_port
    timeout "$limit" "$venv/bin/kosoku" -p 4 -o "$out" "${kargs[@]}" "127.0.0.1:$port" >"$out/kosoku.log" 2>&1 || rc=$?
    ;;
client)
    timeout "$limit" "$venv/bin/kosoku" -m fuzzingserver -o "$out" "${kargs[@]}" "127.0.0.1:$port" >"$out/kosoku.log" 2>&1 &
    pids+=($!)
    wait_port
    timeout "$limit" bash -c "$(declare -f run_peer); $(declare -p opt peers); run_peer client ws://127.0.0.1:$port" >"$out/peer.log" 2>&1 || true
    wait "${pids[0]}" || rc=$?
    ;;
*) echo "usage: $0 server|client ws|websockets [PEER_OPTION] [-- kosoku args]" >&2; exit 2 ;;
esac
echo "autobahn-peers: $mode against $peer ${opt[*]}: $((SECONDS - start)) s, kosoku exit $rc"
[ "$rc" != 124 ] || echo "autobahn-peers: kosoku did not finish within ${limit} s (a hung case: see docs/autobahn-deflate-notes.md)"
[ -f "$out/index.json" ] || { echo "autobahn-peers: no index.json; kosoku log:" >&2; tail -5 "$out/kosoku.log" >&2; exit 1; }
python3 scripts/autobahn_gate.py "$out/index.json" --summary
