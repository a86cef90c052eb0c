#!/bin/bash
# Unit and functional tests of nova-qga-ext, against a real libvirtd, QEMU
# (TCG) and qemu-ga lab. Run as root on Debian 12; on a fresh machine it
# installs everything it needs first.
#
#   bash tools/run-tests.sh                              # everything
#   bash tools/run-tests.sh tests.functional.test_lab    # stestr filters
#
# Environment:
#   QGA_VENV, QGA_LAB_DIR, PYTHON: see tools/bootstrap.sh
#   QGA_UNIT_CONCURRENCY        stestr workers for unit tests (default: CPUs)
#   QGA_FUNCTIONAL_CONCURRENCY  ... for functional tests (default: 1)
#
# Prints one line describing the lab and closes with "N passed, N failed".
# Exits non-zero if any test failed or the lab could not be brought up.
set -euo pipefail

source "$(dirname "$0")/bootstrap.sh"

# 3. The suites: name, test path, stestr arguments. Nova's in-process API
#    harness runs twice, in eventlet mode (nova's test default) and in
#    native threading mode (nova 34's service default); the real-lab suite
#    runs in native threading mode. A suite whose
#    listing fails (e.g. an import error) still runs, so the failure is
#    reported.
stestr="$venv/bin/stestr"
declare -A suite_path=(
    [unit]=./tests/unit
    [functional]=./tests/functional
    [api-eventlet]=./tests/functional/api
    [api-threading]=./tests/functional/api
)
declare -A suite_args=(
    [functional]="--exclude-regex ^tests\.functional\.api\."
)
suite_env() {
    case $1 in
        # The lab suite runs the way nova-compute does by default.
        api-threading|functional) echo OS_NOVA_DISABLE_EVENTLET_PATCHING=1 ;;
        *) echo OS_NOVA_DISABLE_EVENTLET_PATCHING= ;;
    esac
}
selected() {
    local suite=$1 out
    shift
    # shellcheck disable=SC2086
    if out=$(env "$(suite_env "$suite")" "$stestr" --test-path "${suite_path[$suite]}" \
            list ${suite_args[$suite]:-} "$@" 2>/dev/null); then
        [ -n "$out" ]
    else
        [ -n "$(ls "${suite_path[$suite]}"/test_*.py 2>/dev/null)" ]
    fi
}
suites=()
for suite in unit functional api-eventlet api-threading; do
    if selected "$suite" "$@"; then
        suites+=("$suite")
    fi
done

summary=
teardown() {
    local rc=$?
    if [ -n "${lab_up:-}" ]; then
        "$lab_cli" down || rc=1
        if [ -s "$QGA_LAB_DIR/libvirtd.pid" ] && [ -n "${CI:-}" ]; then
            # Nothing else runs on CI: a domain still there leaked from a
            # test, and nothing of the lab may survive the run.
            echo "tests leaked libvirt domains; stopping them" >&2
            "$lab_cli" down --force || true
            rc=1
        fi
        if pgrep -f "qemu-system-x86_64.*$QGA_LAB_DIR/" >/dev/null; then
            echo "lab teardown left QEMU processes behind" >&2
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
    if [ -n "${CI:-}" ]; then
        # CI owns the machine: whatever a crashed earlier run left goes.
        "$lab_cli" down --force > "$logs/lab-preclean.log" 2>&1 || true
    fi
    "$lab_cli" -v up 2> "$logs/lab-up.log" \
        || fail_with_log "lab up" "$logs/lab-up.log"
    say "lab up ($(elapsed "$t") s): $(grep -E 'guest build|libvirtd start' "$logs/lab-up.log" | sed 's/^[0-9-]* [0-9:,]* //' | paste -sd';' - | sed 's/;/, /g')"
fi

# 5. Tests.
results=()
rcs=0
for suite in "${suites[@]}"; do
    t=$(date +%s)
    case $suite in
        unit) concurrency=${QGA_UNIT_CONCURRENCY:-0} ;;
        # Nova's harness needs no lab; one worker per core.
        api-*) concurrency=0 ;;
        # Every lab guest is a TCG QEMU eating a core while it boots.
        *) concurrency=${QGA_FUNCTIONAL_CONCURRENCY:-1} ;;
    esac
    say "$suite tests"
    rc=0
    # shellcheck disable=SC2086
    env "$(suite_env "$suite")" "$stestr" --test-path "${suite_path[$suite]}" \
        run --concurrency "$concurrency" ${suite_args[$suite]:-} "$@" || rc=$?
    "$stestr" --test-path "${suite_path[$suite]}" last --subunit \
        > "$logs/$suite.subunit" 2>/dev/null || true
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
