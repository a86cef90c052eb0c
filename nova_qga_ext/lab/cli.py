# Copyright 2026 The nova-qga-ext Authors
#
#    Licensed under the Apache License, Version 2.0 (the "License"); you may
#    not use this file except in compliance with the License. You may obtain
#    a copy of the License at
#
#         http://www.apache.org/licenses/LICENSE-2.0
#
#    Unless required by applicable law or agreed to in writing, software
#    distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
#    WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
#    License for the specific language governing permissions and limitations
#    under the License.

"""``nova-qga-ext-lab``: install, bring up, inspect and tear down the lab."""

import argparse
import logging
import os
import sys
import time

from nova_qga_ext.lab import core
from nova_qga_ext.lab import demo
from nova_qga_ext.lab import libvirtd

PROBE_GUEST = 'probe'


def describe(versions, boot_seconds):
    """The one-line lab summary that tools/run-tests.sh prints."""
    return ('lab: libvirt %s, QEMU %s (TCG), qemu-ga %s, '
            'guest boot to agent %.1f s' % (
                versions['libvirt'], versions['qemu'], versions['qemu-ga'],
                boot_seconds))


def _timed(label, func, *args):
    started = time.monotonic()
    result = func(*args)
    logging.info('%s: %.1f s', label, time.monotonic() - started)
    return result


def cmd_install(lab, args):
    result = _timed('install', lab.install)
    print('lab install: %d package(s) installed' % len(result['installed']))


def cmd_up(lab, args):
    if args.install:
        _timed('install', lab.install)
    image = _timed('guest build', lab.build_guest)
    _timed('libvirtd start', lab.start_libvirtd)
    stale = lab.destroy_lab_domains()
    if stale:
        logging.info('destroyed stale lab domains: %s', ', '.join(stale))
    logging.info('kernel %s, initrd %s', image.kernel, image.initrd)
    if args.no_probe:
        return
    guest = lab.boot(PROBE_GUEST)
    try:
        print(describe(lab.versions(), guest.boot_seconds))
    finally:
        lab.destroy(guest)


def cmd_down(lab, args):
    destroyed = lab.destroy_lab_domains(force=args.force)
    others = lab.active_domains()
    if libvirtd.read_pid(lab.pidfile) is None:
        state = 'not started by the lab'
    elif others and not args.force:
        # Another user of the shared libvirtd (a concurrent test process).
        state = 'left running for %s' % ', '.join(others)
    else:
        lab.stop_libvirtd()
        state = 'stopped'
    # With a libvirtd still running, its QEMUs are its own, not strays.
    killed = [] if libvirtd.responds() else lab.kill_stray_qemu()
    print('lab down: %d domain(s) destroyed, libvirtd %s%s' % (
        len(destroyed), state,
        ', killed stray QEMU %s' % killed if killed else ''))


def cmd_boot(lab, args):
    lab.build_guest()
    guest = lab.boot(args.name, agent=not args.no_agent,
                     block_rpcs=tuple(filter(None, args.block.split(','))),
                     data_disk_mb=args.disk_mb)
    print('%s %s up in %.1f s (console %s)' % (
        guest.name, guest.uuid, guest.boot_seconds, guest.console_log))


def cmd_status(lab, args):
    pid = libvirtd.read_pid(lab.pidfile)
    print('workdir: %s' % lab.workdir)
    if pid is None and not libvirtd.responds():
        print('libvirtd: not running')
        return
    print('libvirtd: %s' % ('pid %d (lab)' % pid if pid else
                            'running, not started by the lab'))
    print('versions: %s' % lab.versions())
    for dom in lab.connect().listAllDomains():
        print('domain: %s %s active=%d'
              % (dom.name(), dom.UUIDString(), dom.isActive()))


def cmd_demo(lab, args):
    return demo.run(lab)


COMMANDS = {'install': cmd_install, 'up': cmd_up, 'down': cmd_down,
            'boot': cmd_boot, 'status': cmd_status, 'demo': cmd_demo}


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog='nova-qga-ext-lab',
        description='Real libvirtd + TCG guest + qemu-ga lab.')
    parser.add_argument('--workdir', default=None,
                        help='default: $QGA_LAB_DIR or %s'
                        % core.DEFAULT_WORKDIR)
    parser.add_argument('-v', '--verbose', action='store_true')
    sub = parser.add_subparsers(dest='command', required=True)
    sub.add_parser('install', help='install Debian packages, qemu.conf')
    up = sub.add_parser('up', help='build the guest, start libvirtd, boot '
                        'a probe guest and print a one-line summary')
    up.add_argument('--install', action='store_true',
                    help='run install first')
    up.add_argument('--no-probe', action='store_true',
                    help='do not boot the probe guest')
    down = sub.add_parser('down', help='destroy this workdir\'s domains and '
                          'stop the lab\'s libvirtd unless it runs others')
    down.add_argument('--force', action='store_true',
                      help='destroy every domain, also those of running '
                      'processes, and stop libvirtd')
    boot = sub.add_parser('boot', help='boot a guest and leave it running')
    boot.add_argument('name')
    boot.add_argument('--no-agent', action='store_true')
    boot.add_argument('--block', default='',
                      help='comma-separated agent commands to block')
    boot.add_argument('--disk-mb', type=int,
                      default=core.DEFAULT_DATA_DISK_MB)
    sub.add_parser('status', help='show libvirtd and domains')
    sub.add_parser('demo', help='walk through the agent features on a guest')
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO if args.verbose else
                        logging.WARNING,
                        format='%(asctime)s %(message)s', stream=sys.stderr)
    if os.geteuid() != 0:
        parser.error('the lab needs root')
    lab = core.Lab(args.workdir)
    return COMMANDS[args.command](lab, args) or 0


if __name__ == '__main__':
    sys.exit(main())
