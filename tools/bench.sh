#!/bin/bash
# Benchmarks of nova-qga-ext against raw libvirt-python in the same run, on
# the real lab. Run as root on Debian 12; on a fresh machine it installs
# what it needs first (see tools/bootstrap.sh). Prints a table and writes
# bench-results/latest.json. Arguments go to the benchmark, for example
# --iterations 3 --disk-sizes 32,1024.
set -euo pipefail

source "$(dirname "$0")/bootstrap.sh"

lab_down_on_exit bench

OS_NOVA_DISABLE_EVENTLET_PATCHING=1 "$venv/bin/python" -m nova_qga_ext.lab.bench "$@"
