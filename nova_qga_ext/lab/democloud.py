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

"""The README demo: the openstack CLI drives a real guest through Nova.

``python -m nova_qga_ext.lab.democloud [--keep]`` (what tools/demo.sh runs):
brings up the lab's libvirtd, runs Nova 34 in this process
(nova_qga_ext.lab.cloud), lets Nova boot the lab guest, then runs the real
``openstack`` CLI with the plugin's commands against it, checks the results
inside the guest through the lab's raw agent path, prints a report and
tears everything down. With --keep it waits, after the report, until
interrupted, so that the API and the CLI can be used by hand.
"""

import argparse
import os
import secrets
import signal
import subprocess
import sys
import time

# Nova's services run on native threads, as nova 34 deploys them; this has
# to happen before anything imports nova.
os.environ.setdefault('OS_NOVA_DISABLE_EVENTLET_PATCHING', '1')
from nova import monkey_patch  # noqa: E402

monkey_patch.patch()

import logging  # noqa: E402

from nova_qga_ext.lab import cloud as lab_cloud  # noqa: E402
from nova_qga_ext.lab import core  # noqa: E402
from nova_qga_ext.lab import guest as lab_guest  # noqa: E402

SERVER = 'demo'
SNAPSHOT = 'demo-quiesced'


class Demo:
    def __init__(self, out=print):
        self.out = out
        self.timings = []
        self.checks = []
        self.started = time.monotonic()

    def timed(self, label, func, *args, **kwargs):
        started = time.monotonic()
        result = func(*args, **kwargs)
        self.timings.append((label, time.monotonic() - started))
        return result

    def check(self, ok, what):
        self.checks.append((ok, what))
        self.out('   %s %s' % ('ok  ' if ok else 'FAIL', what))

    def openstack(self, *argv, stdin=None, show=True, label=None):
        """Run the real openstack CLI; returns (exit code, stdout)."""
        command = [self.cli, *argv]
        shown = ' '.join(a if ' ' not in a else "'%s'" % a for a in argv)
        if show:
            self.out('$ openstack %s' % shown)
        started = time.monotonic()
        result = subprocess.run(command, input=stdin, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=self.env,
                                text=True)
        self.timings.append(('CLI: %s' % (label or ' '.join(argv[:2])),
                             time.monotonic() - started))
        if show:
            for line in (result.stdout + result.stderr).splitlines():
                self.out('  ' + line)
        return result.returncode, result.stdout

    def setup_cli(self, cloud):
        self.cli = os.path.join(os.path.dirname(sys.executable), 'openstack')
        config = os.path.join(cloud.workdir, 'clouds.yaml')
        name = cloud.clouds_yaml(config)
        self.env = dict(os.environ, OS_CLIENT_CONFIG_FILE=config,
                        OS_CLOUD=name)
        self.env.pop('OS_NOVA_DISABLE_EVENTLET_PATCHING', None)
        return config, name

    def run(self, lab, cloud, server):
        guest = cloud.lab_guest(server['id'])
        self.out('\n1. Set alice\'s password through Nova, then check it in '
                 'the guest')
        root_before = guest.read_shadow_hash('root')
        alice_before = guest.read_shadow_hash('alice')
        # Random, sent on stdin and never printed.
        password = secrets.token_urlsafe(12)
        rc, _ = self.openstack('server', 'user', 'password', 'set', SERVER,
                               'alice', '--password-stdin',
                               stdin=password + '\n',
                               label='set alice\'s password')
        self.check(rc == 0, 'password set (exit code %d)' % rc)
        self.out('$ openstack server exec %s -- /bin/sh -c "grep ^alice: '
                 '/etc/shadow | cut -d: -f2"   (output kept off screen)'
                 % SERVER)
        rc, out = self.openstack(
            'server', 'exec', SERVER, '--', '/bin/sh', '-c',
            'grep ^alice: /etc/shadow | cut -d: -f2', show=False,
            label='exec: read alice\'s hash')
        alice_after = out.strip()
        self.check(rc == 0 and alice_after != alice_before,
                   'alice\'s shadow hash changed (%s... -> %s...)' % (
                       alice_before[:3], alice_after[:3]))
        self.check(lab_guest.password_matches(password, alice_after),
                   'it checks against the new password')
        self.check(guest.read_shadow_hash('root') == root_before,
                   'root\'s hash is unchanged')

        self.out('\n2. Run a command in the guest')
        rc, out = self.openstack('server', 'exec', SERVER, '--', 'uname',
                                 '-a', label='exec: uname -a')
        self.out('  exit code: %d' % rc)
        self.check(rc == 0 and out.startswith('Linux qgalab'),
                   'uname -a ran in the guest, exit code %d' % rc)
        rc, _ = self.openstack('server', 'exec', SERVER, '--', '/bin/sh',
                               '-c', 'echo to stderr >&2; exit 3',
                               label='exec: exit 3')
        self.out('  exit code: %d' % rc)
        self.check(rc == 3, 'the guest command\'s exit code comes back')

        self.out('\n3. Quiesced snapshot')
        guest.check_shell('echo before-snapshot > /data/marker; sync')
        rc, out = self.openstack('server', 'snapshot', 'create', SERVER,
                                 '--name', SNAPSHOT, '--wait',
                                 label='quiesced snapshot --wait')
        fields = _table(out)
        window = fields.get('freeze_window_ms')
        self.check(rc == 0 and fields.get('status') == 'active',
                   'snapshot image active')
        self.check(bool(window), 'filesystems %s frozen for %s ms' % (
            fields.get('frozen_filesystems'), window))
        fsck = lab_cloud.fsck_image(cloud.images.path(fields.get('id', '')))
        self.check(fsck.ok, 'the image passes e2fsck -fn (%s)' % fsck.detail)
        self.check('marker' in fsck.files, 'and holds /data/marker')

        self.out('\n4. What Nova recorded')
        rc, out = self.openstack('server', 'event', 'list', SERVER, '-c',
                                 'Action', '-c', 'Request ID',
                                 label='server event list')
        self.check(rc == 0 and all(a in out for a in (
            'changePassword', 'guestExec', 'quiescedSnapshot')),
            'the actions are in the server\'s instance actions')
        return {'freeze_window_ms': window}

    def report(self, versions, extra):
        failed = [what for ok, what in self.checks if not ok]
        self.out('\n' + '=' * 64)
        self.out('nova-qga-ext demo report')
        self.out('  libvirt %(libvirt)s, QEMU %(qemu)s (TCG), qemu-ga '
                 '%(qemu-ga)s' % versions)
        for label, seconds in self.timings:
            self.out('  %-36s %6.1f s' % (label, seconds))
        if extra.get('freeze_window_ms'):
            self.out('  %-36s %6s ms' % ('freeze window',
                                         extra['freeze_window_ms']))
        self.out('  %-36s %6.1f s' % ('total so far',
                                      time.monotonic() - self.started))
        self.out('  checks: %d passed, %d failed' % (
            len(self.checks) - len(failed), len(failed)))
        for what in failed:
            self.out('    FAILED: %s' % what)
        self.out('=' * 64)
        return not failed


def _table(text):
    """The field/value rows of an openstack CLI table."""
    fields = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip('|').split('|')]
        if len(cells) == 2 and cells[0] and not cells[0].startswith('-'):
            fields[cells[0]] = cells[1]
    return fields


def _wait_for_interrupt(out):
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    try:
        while not stop:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    out('\ntearing down...')


def _keep_instructions(cloud, config, name, log_file, out):
    out('\nThe cloud keeps running (Ctrl-C to tear it down):')
    out('  compute API  %s/v2.1  (no auth: every request is admin of '
        'project %s)' % (cloud.url, lab_cloud.PROJECT_ID))
    out('  image API    %s  (read only)' % cloud.image_url)
    out('  nova log     %s' % log_file)
    out('In another shell:')
    out('  export PATH=%s:$PATH' % os.path.dirname(sys.executable))
    out('  export OS_CLIENT_CONFIG_FILE=%s OS_CLOUD=%s' % (config, name))
    out('  openstack server show %s' % SERVER)
    out('  openstack server exec %s -- cat /etc/os-release' % SERVER)
    out('  openstack server user password set %s alice' % SERVER)
    out('  openstack server exec %s --no-wait -- sleep 5' % SERVER)
    out('  openstack server exec status %s <pid>' % SERVER)
    out('  openstack server snapshot create %s --name snap2 --wait' % SERVER)
    out('  curl -s -H "OpenStack-API-Version: compute latest" '
        '%s/v2.1/servers/detail' % cloud.url)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog='python -m nova_qga_ext.lab.democloud',
        description='Nova + the lab guest + the openstack CLI, end to end.')
    parser.add_argument('--keep', action='store_true',
                        help='keep the cloud running after the report '
                        'until interrupted')
    parser.add_argument('--debug', action='store_true',
                        help='DEBUG level in the nova log')
    parser.add_argument('--api-port', type=int, default=0,
                        help='compute API port on 127.0.0.1 (default: any '
                        'free one)')
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error('the demo needs root (libvirtd)')

    demo = Demo(out=lambda line: print(line, flush=True))
    lab = core.Lab()
    os.makedirs(lab.workdir, exist_ok=True)
    log_file = os.path.join(lab.workdir, 'logs', 'demo-nova.log')
    os.makedirs(os.path.dirname(log_file), exist_ok=True)
    logging.basicConfig(
        filename=log_file, filemode='w',
        level=logging.DEBUG if args.debug else logging.INFO,
        format='%(asctime)s %(threadName)s %(levelname)s %(name)s '
        '%(message)s')
    cloud = None
    ok = False
    try:
        demo.out('Bringing up the lab (libvirtd, guest image)...')
        demo.timed('lab up (guest image, libvirtd)', lambda: (
            lab.build_guest(), lab.start_libvirtd()))
        lab.destroy_lab_domains()
        demo.out('Starting Nova 34 in this process (API, conductor, '
                 'scheduler, placement, compute with qga_ext.LibvirtDriver '
                 'on qemu:///system)...')
        cloud = lab_cloud.Cloud(lab, api_port=args.api_port,
                                debug=args.debug)
        cloud.setUp()
        demo.timings.append(('nova up', cloud.timings['nova up']))
        demo.out('  compute API on %s/v2.1, log in %s' % (
            cloud.url, log_file))
        config, name = demo.setup_cli(cloud)
        demo.out('Booting server "%s" through Nova: kernel (aki) + '
                 'initramfs (ari) + ext4 root disk (ami), '
                 'hw_qemu_guest_agent=yes...' % SERVER)
        server = cloud.boot_lab_server(SERVER)
        demo.timings.append(('spawn (API to ACTIVE)',
                             cloud.timings['spawn']))
        demo.timings.append(('spawn to agent answering',
                             cloud.timings['spawn to agent']))
        demo.out('  server %s is ACTIVE, domain %s, qemu-ga answers' % (
            server['id'], cloud.domain(server['id']).name()))
        demo.openstack('server', 'show', SERVER, '-c', 'id', '-c', 'status',
                       '-c', 'OS-EXT-SRV-ATTR:instance_name', '-c', 'image',
                       label='server show')
        extra = demo.run(lab, cloud, server)
        ok = demo.report(lab.versions(), extra)
        if args.keep:
            _keep_instructions(cloud, config, name, log_file, demo.out)
            _wait_for_interrupt(demo.out)
    finally:
        if cloud is not None:
            cloud.cleanUp()
        lab.teardown()
        left = [d for d in lab.active_domains()
                if d.startswith(lab_cloud.DOMAIN_PREFIX)]
        demo.out('torn down%s; total %.1f s' % (
            ' (domains left: %s)' % ', '.join(left) if left else '',
            time.monotonic() - demo.started))
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
