#!/bin/bash
# Unit and functional tests of nova-qga-ext, against a real libvirtd, QEMU
# (TCG) and qemu-ga lab. Run as root on Debian 12; on a fresh machine it
# installs everything it needs first.
#
#   bash tools/run-tests.sh                              # everything
#   bash tools/run-tests.sh tests.functional.test_lab    # stestr filters
#
# Environment:
#   QGA_VENV      virtualenv to create/reuse (default: <repo>/.venv)
#   QGA_LAB_DIR   lab work directory (default: /var/tmp/nova-qga-ext-lab)
#   PYTHON        interpreter for the virtualenv (default: python3)
#   QGA_UNIT_CONCURRENCY  stestr workers for unit tests (default: CPUs)
#
# Prints one line describing the lab and closes with "N passed, N failed".
# Exits non-zero if any test failed or the lab could not be brought up.
set -euo pipefail

started=$(date +%s)
repo=$(cd "$(dirname "$0")/.." && pwd)
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
    echo "tools/run-tests.sh needs root (apt-get, libvirtd)" >&2
    exit 2
fi

# One run per lab directory at a time: a run tears the lab down at its end.
exec 9>"$QGA_LAB_DIR/run-tests.lock"
if ! flock -n 9; then
    say "waiting for another run-tests.sh using $QGA_LAB_DIR"
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

# 3. Which suites have selected tests. A suite whose listing fails (e.g. an
#    import error) still runs, so the failure is reported.
stestr="$venv/bin/stestr"
selected() {
    local out
    if out=$("$stestr" --test-path "./tests/$1" list "${@:2}" 2>/dev/null); then
        [ -n "$out" ]
    else
        [ -n "$(ls tests/"$1"/test_*.py tests/"$1"/*/test_*.py 2>/dev/null)" ]
    fi
}
suites=()
for suite in unit functional; do
    if selected "$suite" "$@"; then
        suites+=("$suite")
    fi
done

lab_cli="$venv/bin/nova-qga-ext-lab"
summary=
teardown() {
    local rc=$?
    if [ -n "${lab_up:-}" ]; then
        "$lab_cli" down || rc=1
        # Nothing of the lab may survive the run.
        if pgrep -f "qemu-system-x86_64.*$QGA_LAB_DIR/" >/dev/null \
                || [ -s "$QGA_LAB_DIR/libvirtd.pid" ]; then
            echo "lab teardown left processes behind:" >&2
            pgrep -af "libvirtd|qemu-system" >&2 || true
            rc=1
        fi
    fi
    echo "total wall time $(elapsed "$started") s"
    # The closing line, last of all.
    if [ -n "$summary" ]; then
        echo "$summary"
    fi
    exit $rc
}
trap teardown EXIT

# 4. The lab, once for all test processes: they find libvirtd running and
#    leave it to the teardown above.
if [[ " ${suites[*]} " == *" functional "* ]]; then
    lab_up=1
    t=$(date +%s)
    "$lab_cli" -v up 2> "$logs/lab-up.log" \
        || fail_with_log "lab up" "$logs/lab-up.log"
    say "lab up ($(elapsed "$t") s): $(grep -E 'guest build|libvirtd start' "$logs/lab-up.log" | sed 's/^[0-9-]* [0-9:,]* //' | paste -sd, -)"
fi

# 5. Tests.
results=()
rcs=0
for suite in "${suites[@]}"; do
    t=$(date +%s)
    if [ "$suite" = unit ]; then
        concurrency=${QGA_UNIT_CONCURRENCY:-0}
    else
        # Every lab guest is a TCG QEMU eating a core while it boots.
        concurrency=1
    fi
    say "$suite tests"
    rc=0
    "$stestr" --test-path "./tests/$suite" run --concurrency "$concurrency" \
        "$@" || rc=$?
    "$stestr" last --subunit > "$logs/$suite.subunit" 2>/dev/null || true
    results+=("$suite:$rc:$logs/$suite.subunit")
    say "$suite tests done ($(elapsed "$t") s, stestr exit $rc)"
done

summary=$("$venv/bin/python" - "${results[@]}" <<'PYEOF'
import collections
import sys

import subunit
import testtools

total = collections.Counter()
for arg in sys.argv[1:]:
    suite, rc, path = arg.split(':', 2)
    counts = collections.Counter()

    def record(test, counts=counts):
        counts[test['status']] += 1

    with open(path, 'rb') as f:
        result = testtools.StreamToDict(record)
        result.startTestRun()
        subunit.ByteStreamToStreamResult(f).run(result)
        result.stopTestRun()
    passed = counts['success'] + counts['xfail']
    skipped = counts['skip']
    failed = sum(counts.values()) - passed - skipped
    if int(rc) and not failed:
        # stestr failed without a failing test: discovery or import error.
        failed = 1
    print('%s: %d passed, %d failed, %d skipped' % (suite, passed, failed,
                                                    skipped),
          file=sys.stderr)
    total.update(passed=passed, failed=failed)
print('%d passed, %d failed' % (total['passed'], total['failed']))
PYEOF
)
[ "${#suites[@]}" -gt 0 ] || summary="0 passed, 0 failed"
case "$summary" in
    "0 passed, 0 failed") echo "no test ran" >&2; exit 1 ;;
    *" 0 failed") exit 0 ;;
    *) exit 1 ;;
esac
