#!/usr/bin/env bash
# margintick launcher.
#   ./run.sh              set up (virtualenv + dependencies) and start the whole demo stack on 127.0.0.1
#   ./run.sh test [args]  set up and run the whole test suite (args go to pytest)
#   ./run.sh bench [names] set up and run the benchmarks (bench/bench_<name>.py), printing their tables
#   ./run.sh setup        only create / update the virtualenv
# MARGINTICK_VENV chooses the virtualenv (default .venv); MARGINTICK_VAR the demo's state directory (var/).
set -euo pipefail
cd "$(dirname "$0")"
VENV=${MARGINTICK_VENV:-.venv}
PY="$VENV/bin/python"

find_python() {
    for p in python3.13 python3.12 python3.11 python3; do
        if command -v "$p" >/dev/null && "$p" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
            echo "$p"; return
        fi
    done
    echo "margintick needs Python 3.11 or newer" >&2; exit 1
}

setup() {
    [ -x "$PY" ] || "$(find_python)" -m venv "$VENV"
    local stamp="$VENV/.margintick-deps" want
    want=$(sha256sum pyproject.toml | cut -d' ' -f1)
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        echo "run.sh: installing dependencies into $VENV (QuickFIX compiles from source the first time: ~6 min)" >&2
        "$PY" -m pip install -q --upgrade pip wheel setuptools
        # the project runs from this directory; only its dependencies (runtime + test) are installed
        "$PY" - <<'PYEOF' > "$VENV/.margintick-requirements.txt"
import tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
print("\n".join(project["dependencies"] + project["optional-dependencies"]["test"]))
PYEOF
        "$PY" -m pip install -q -r "$VENV/.margintick-requirements.txt"
        echo "$want" > "$stamp"
    fi
}

STACK_PIDS=()      # global: the EXIT trap runs after demo() has returned
STOPPING=
STOP_GRACE_S=20

stop_stack() {     # TERM every process of the stack, wait up to STOP_GRACE_S, KILL what is left
    [ -n "$STOPPING" ] && return
    STOPPING=1
    trap - INT TERM EXIT
    echo; echo "run.sh: stopping the stack"
    kill -TERM "${STACK_PIDS[@]}" 2>/dev/null || true
    local deadline=$((SECONDS + STOP_GRACE_S)) pid
    for pid in "${STACK_PIDS[@]}"; do
        while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.2; done
    done
    for pid in "${STACK_PIDS[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            echo "run.sh: pid $pid did not stop within ${STOP_GRACE_S} s; killing it" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    wait "${STACK_PIDS[@]}" 2>/dev/null || true
}

demo() {
    local var=${MARGINTICK_VAR:-var}
    mkdir -p "$var/log"
    trap stop_stack INT TERM EXIT
    start() {   # start NAME module args...: a process of the stack, logging to var/log/NAME.log
        local name=$1; shift
        "$PY" -m "$@" >"$var/log/$name.log" 2>&1 &
        STACK_PIDS+=($!)
        echo "  started $name (pid $!): python -m $*"
    }
    echo "run.sh: starting margintick (state and logs in $var/)"
    start tickerplant tickerplant --journal "$var/journal"
    wait_for_tickerplant
    "$PY" -m feedhandlers.refdata >"$var/log/refdata.log" 2>&1 \
        || { echo "run.sh: reference data failed, see $var/log/refdata.log" >&2; exit 1; }
    echo "  published the reference data (data/ref)"
    start rdb rdb --hdb "$var/hdb"
    start calc calc
    start fix feedhandlers.fix --state-dir "$var/fix"
    start gateway gateway
    start prices feedhandlers.prices
    sleep 2
    start omsim feedhandlers.omsim --state-dir "$var/omsim"
    echo
    echo "margintick is up:"
    echo "  q / PyKX:  h:hopen \`:127.0.0.1:5010:demo:demo   |  pykx.SyncQConnection('127.0.0.1', 5010, username='demo', password='demo')"
    echo "  HTTP:      curl -u demo:demo http://127.0.0.1:8080/margin   (OpenAPI: http://127.0.0.1:8080/openapi.json)"
    echo "  FIX:       drop copy acceptor on 127.0.0.1:9878, TargetCompID MARGINTICK, SenderCompID CLIENT free for your engine"
    echo "Ctrl-C stops everything."
    wait -n "${STACK_PIDS[@]}" || true
    sleep 0.2           # on Ctrl-C the processes and this shell get SIGINT together: let the trap run first
    if [ -n "$STOPPING" ]; then return 0; fi
    echo "run.sh: a process of the stack exited; stopping the rest (see $var/log)" >&2
    stop_stack
    return 1
}

wait_for_tickerplant() {
    "$PY" - <<'PYEOF'
import sys, time
from common.defaults import TP_CONTROL
from common.rpc import RpcClient, RpcError
client, deadline = RpcClient(TP_CONTROL, timeout=1.0), time.monotonic() + 30
while time.monotonic() < deadline:
    try:
        client.call("status"); sys.exit(0)
    except RpcError:
        time.sleep(0.2)
sys.exit("run.sh: the tickerplant did not answer within 30 s")
PYEOF
}

cmd=${1:-demo}
[ $# -gt 0 ] && shift
case "$cmd" in
    setup) setup ;;
    test)  setup; exec "$PY" -m pytest "$@" ;;
    bench) setup; exec "$PY" -m bench "$@" ;;
    demo)  setup; demo ;;
    -h|--help|help) sed -n '2,8p' "$0" ;;
    *) echo "usage: ./run.sh [demo|test|bench|setup]" >&2; exit 2 ;;
esac
