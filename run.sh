#!/usr/bin/env bash
# margintick launcher.
#   ./run.sh [args]       set up (virtualenv + dependencies) and start the whole demo stack on 127.0.0.1,
#                         supervised: python -m stack [args] (a process that dies is restarted with backoff)
#   ./run.sh test [args]  set up and run the whole test suite (args go to pytest)
#   ./run.sh bench [names] set up and run the benchmarks (bench/bench_<name>.py), printing their tables
#   ./run.sh chaos [args] whole-stack fault injection: python -m chaos [args] (see docs/operations.md)
#   ./run.sh fuzz [args]  python -m fuzz [args]
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

# the dashboard's tests and benchmark drive the OS Chromium (Playwright never downloads a browser)
ensure_chromium() {
    command -v chromium >/dev/null || command -v chromium-browser >/dev/null || [ -n "${MARGINTICK_CHROMIUM:-}" ] && return
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "run.sh: installing Chromium (apt-get install chromium) for the dashboard's browser tests" >&2
        { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; } \
            || echo "run.sh: apt-get could not install Chromium" >&2
    else
        echo "run.sh: no Chromium and not root: the dashboard's browser tests will be skipped (failed under CI=true)" >&2
    fi
}

cmd=${1:-demo}
if [ $# -gt 0 ]; then case "$cmd" in demo|setup|test|bench|chaos|fuzz|backtest) shift ;; esac; fi
case "$cmd" in
    setup) setup ;;
    test)  setup; ensure_chromium; exec "$PY" -m pytest "$@" ;;
    bench) setup; ensure_chromium; exec "$PY" -m bench "$@" ;;
    chaos) setup; exec "$PY" -m chaos "$@" ;;
    fuzz)  setup; exec "$PY" -m fuzz "$@" ;;
    backtest) setup; exec "$PY" -m backtest "$@" ;;
    -h|--help|help) sed -n '2,10p' "$0" ;;
    *)     setup; exec "$PY" -m stack "$@" ;;        # the demo; options (e.g. --help) go to python -m stack
esac
