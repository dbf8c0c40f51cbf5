# Sourced (not run) by scripts/autobahn.sh and scripts/autobahn-peers.sh, from the repo root.
# install_kosoku VENV: the runner, kosoku 0.1.* from PyPI, into VENV unless already there.
# Processes whose ids are added to `pids` are stopped on exit; wait_port waits until something
# listens on 127.0.0.1:$port.

install_kosoku() {
    if [ ! -x "$1/bin/kosoku" ]; then
        python3 -m venv "$1"
        "$1/bin/pip" install --quiet 'kosoku==0.1.*'
    fi
}

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

wait_port() {
    for _ in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "$(basename "$0"): nothing listens on $port" >&2; return 1
}
