#!/bin/bash
# Sourced by tools/run-tests.sh, tools/demo.sh and tools/bench.sh: root
# check, one user of the lab directory at a time, Debian packages, and the
# project's virtualenv with the project installed non-editable.
#
# Environment:
#   QGA_VENV      virtualenv to create/reuse (default: <repo>/.venv)
#   QGA_LAB_DIR   lab work directory (default: /var/tmp/nova-qga-ext-lab)
#   PYTHON        interpreter for the virtualenv (default: python3)
# Sets: repo, venv, logs, started, lab_cli; helpers say, elapsed,
# fail_with_log, lab_down_on_exit.

started=$(date +%s)
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
venv=${QGA_VENV:-$repo/.venv}
python=${PYTHON:-python3}
export QGA_LAB_DIR=${QGA_LAB_DIR:-/var/tmp/nova-qga-ext-lab}
logs=$QGA_LAB_DIR/logs
mkdir -p "$logs"

say() { printf '==> %s\n' "$*"; }
elapsed() { echo $(( $(date +%s) - $1 )); }
fail_with_log() {
    echo "$1 failed; last lines of $2:" >&2
    tail -n 40 "$2" >&2
    exit 1
}

if [ "$(id -u)" != 0 ]; then
    echo "$0 needs root (apt-get, libvirtd)" >&2
    exit 2
fi

# One run per lab directory at a time: a run tears the lab down at its end.
exec 9>"$QGA_LAB_DIR/run.lock"
if ! flock -n 9; then
    say "waiting for another run using $QGA_LAB_DIR"
    flock 9
fi

# 1. Debian packages, with the system Python (the virtualenv needs them).
t=$(date +%s)
if ! command -v "$python" >/dev/null; then
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3 >/dev/null
fi
"$python" nova_qga_ext/lab/install.py > "$logs/install.log" 2>&1 \
    || fail_with_log "lab install" "$logs/install.log"
say "host packages ready ($(elapsed "$t") s): $(tail -n 1 "$logs/install.log")"

# 2. Virtualenv, rebuilt only when the requirements or Python change.
t=$(date +%s)
stamp="$(cat requirements.txt test-requirements.txt | sha256sum) $("$python" -V 2>&1)"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.qga-stamp" 2>/dev/null)" != "$stamp" ]; then
    say "creating virtualenv $venv"
    rm -rf "$venv"
    "$python" -m venv "$venv"
    "$venv/bin/pip" install -q -r requirements.txt -r test-requirements.txt \
        > "$logs/pip.log" 2>&1 || fail_with_log "pip install" "$logs/pip.log"
    echo "$stamp" > "$venv/.qga-stamp"
fi
# Non-editable, as deployed: this also puts the nova.virt.qga_ext shim into
# nova's namespace.
"$venv/bin/pip" install -q --no-deps --force-reinstall . \
    > "$logs/pip-project.log" 2>&1 \
    || fail_with_log "pip install ." "$logs/pip-project.log"
say "virtualenv ready ($(elapsed "$t") s)"

lab_cli="$venv/bin/nova-qga-ext-lab"

# For the tools that bring the lab up for themselves (demo, bench): on exit,
# tear it down, fail if QEMU processes survive, and report the wall time.
lab_down_on_exit() {
    tool_name=$1
    trap _lab_down EXIT
}
_lab_down() {
    local rc=$?
    "$lab_cli" down >/dev/null || rc=1
    if pgrep -f "qemu-system-x86_64.*$QGA_LAB_DIR/" >/dev/null; then
        echo "$tool_name teardown left QEMU processes behind" >&2
        rc=1
    fi
    echo "$tool_name wall time $(elapsed "$started") s"
    exit $rc
}
