#!/bin/bash
# The README demo: Nova 34 runs in one process on a real libvirtd (API on a
# loopback port, conductor, scheduler, placement, compute with
# qga_ext.LibvirtDriver on qemu:///system), boots the lab's TCG guest with
# the real qemu-ga, and the real `openstack` CLI with this plugin's commands
# sets alice's password, runs commands in the guest and takes a quiesced
# snapshot; every effect is checked inside the guest. Prints a report and
# tears everything down. Run as root on Debian 12; on a fresh machine it
# installs what it needs first (see tools/bootstrap.sh).
#
#   tools/demo.sh            run, report, tear down
#   tools/demo.sh --keep     keep the cloud running after the report (prints
#                            the endpoint and commands to try; Ctrl-C ends it)
#   tools/demo.sh --debug    DEBUG level in the nova log
#
# The lab-only walkthrough (the agent client on a bare lab guest, no Nova):
#   .venv/bin/nova-qga-ext-lab demo
set -euo pipefail

source "$(dirname "$0")/bootstrap.sh"

lab_down_on_exit demo

"$venv/bin/python" -m nova_qga_ext.lab.democloud "$@"
