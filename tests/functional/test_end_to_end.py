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

"""The whole chain: API -> RPC -> compute -> LibvirtDriver -> libvirtd ->
QEMU -> qemu-ga, on a server that Nova itself booted from the lab's images.

Nova runs in this process (nova_qga_ext.lab.cloud, the demo's cloud); the
requests go over HTTP to its API. The effects are checked inside the guest
through the lab's raw agent path (LabGuest), which shares no code with the
plugin.
"""

import base64
import os
import secrets
import subprocess
import sys
import time

import testtools

from nova_qga_ext.lab import cloud as lab_cloud
from nova_qga_ext.lab import guest as lab_guest
from tests.functional import lab as lab_fixtures

# Rewrites files on /data in a loop, each write synced, until killed.
_WRITE_LOAD = ('i=0; while :; do '
               'dd if=/dev/urandom of=/data/load.$((i % 4)) bs=64k count=8 '
               'conv=fsync 2>/dev/null; i=$((i + 1)); done')


class EndToEndTest(testtools.TestCase):
    """One cloud and one server for the class: a boot costs seconds."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.lab = lab_fixtures.shared_lab()
        cls.cloud = lab_cloud.Cloud(cls.lab)
        try:
            cls.cloud.setUp()
            cls.server = cls.cloud.boot_lab_server(
                lab_fixtures.unique_name('e2e'))
            cls.guest = cls.cloud.lab_guest(cls.server['id'])
        except BaseException:
            cls.cloud.cleanUp()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.cloud.cleanUp()
        super().tearDownClass()

    def action(self, body, expect):
        return self.cloud.request(
            'POST', '/servers/%s/action' % self.server['id'], body,
            expect=expect)

    def wait_for_idle(self, timeout=60):
        deadline = time.monotonic() + timeout
        while self.cloud.task_state(self.server['id']) is not None:
            self.assertLess(time.monotonic(), deadline,
                            'server still busy after %d s' % timeout)
            time.sleep(0.2)

    def test_nova_spawned_the_lab_guest(self):
        instance = self.cloud.instance(self.server['id'])
        domain = self.cloud.domain(self.server['id'])
        self.assertEqual(instance.name, domain.name())
        xml = domain.XMLDesc(0)
        self.assertIn("<channel type='unix'>", xml)
        self.assertIn('org.qemu.guest_agent.0', xml)
        self.assertIn(self.lab.build_guest().kernel_version,
                      self.guest.check_shell('uname -r').decode())
        self.assertIn(b'/dev/vda on /data type ext4',
                      self.guest.check_shell('mount'))

    def test_change_password_of_alice_not_root(self):
        root_before = self.guest.read_shadow_hash('root')
        alice_before = self.guest.read_shadow_hash('alice')
        password = secrets.token_urlsafe(12)

        self.action({'changePassword': {'adminPass': password,
                                        'userName': 'alice'}}, 202)
        self.wait_for_idle()

        alice_after = self.guest.read_shadow_hash('alice')
        self.assertNotEqual(alice_before, alice_after)
        self.assertTrue(lab_guest.password_matches(password, alice_after))
        self.assertFalse(lab_guest.password_matches(password, root_before))
        self.assertEqual(root_before, self.guest.read_shadow_hash('root'))
        actions = self.cloud.request(
            'GET', '/servers/%s/os-instance-actions' % self.server['id'])
        self.assertIn('changePassword',
                      [a['action'] for a in actions['instanceActions']])

    def test_guest_exec_returns_the_commands_output(self):
        token = secrets.token_hex(8)
        self.guest.check_shell('echo %s > /run/e2e-token' % token)
        kernel = self.guest.check_shell('uname -r')

        reply = self.action({'guestExec': {
            'command': ['/bin/sh', '-c',
                        'cat /run/e2e-token; uname -r; echo oops >&2; '
                        'exit 3'],
            'timeout': 60}}, 200)['guestExec']

        self.assertTrue(reply['exited'])
        self.assertEqual(3, reply['exitcode'])
        self.assertEqual(token.encode() + b'\n' + kernel,
                         base64.b64decode(reply['stdout']))
        self.assertEqual(b'oops\n', base64.b64decode(reply['stderr']))
        self.assertFalse(reply['stdout_truncated'])

    def test_quiesced_snapshot_under_write_load_passes_fsck(self):
        self.guest.check_shell('echo before > /data/e2e-marker; sync')
        writer = self.guest.start_exec(['/bin/sh', '-c', _WRITE_LOAD],
                                       capture=False)
        self.addCleanup(self.guest.shell, 'kill %d' % writer)
        # The writer is running and has written.
        self.guest.check_shell(
            'i=0; while [ ! -e /data/load.1 ] && [ $i -lt 300 ]; do '
            'sleep 0.1; i=$((i + 1)); done; kill -0 %d' % writer)

        image_id = self.action({'quiescedSnapshot': {
            'name': lab_fixtures.unique_name('e2e-snap')}}, 202)['image_id']
        image = self._wait_for_image(image_id)

        self.assertEqual('1', image['properties'].get(
            'qga_ext_frozen_filesystems'))
        self.assertGreater(float(image['properties'].get(
            'qga_ext_freeze_window_ms')), 0)
        self.assertEqual(0, self.guest.shell('kill -0 %d' % writer)[0],
                         'the writer stopped during the snapshot')
        fsck = lab_cloud.fsck_image(self.cloud.images.path(image_id))
        self.assertTrue(fsck.ok, fsck.detail)
        self.assertIn('e2e-marker', fsck.files)
        self.assertIn('load.0', fsck.files)

    def openstack(self, *argv, stdin=b''):
        """The real ``openstack`` entry point of this virtualenv."""
        config = os.path.join(self.cloud.workdir, 'clouds.yaml')
        env = dict(os.environ, OS_CLIENT_CONFIG_FILE=config,
                   OS_CLOUD=self.cloud.clouds_yaml(config))
        return subprocess.run(
            [os.path.join(os.path.dirname(sys.executable), 'openstack'),
             *argv], input=stdin, capture_output=True, env=env, timeout=120)

    def test_cli_exec_status_password_and_errors(self):
        server = self.server['id']

        done = self.openstack('server', 'exec', server, '--', '/bin/sh',
                              '-c', 'printf "\\377out"; printf err >&2; '
                              'exit 5')
        self.assertEqual((5, b'\xffout', b'err'),
                         (done.returncode, done.stdout, done.stderr))

        started = self.openstack('server', 'exec', server, '--no-wait',
                                 '--', '/bin/echo', 'later')
        self.assertEqual(0, started.returncode, started.stderr)
        pid = started.stdout.decode().strip()
        status = self.openstack('server', 'exec', 'status', server, pid)
        self.assertEqual((0, b'later\n'),
                         (status.returncode, status.stdout))

        password = secrets.token_urlsafe(12)
        changed = self.openstack('server', 'user', 'password', 'set',
                                 server, 'alice', '--password-stdin',
                                 stdin=password.encode() + b'\n')
        self.assertEqual(0, changed.returncode, changed.stderr)
        self.wait_for_idle()
        self.assertTrue(lab_guest.password_matches(
            password, self.guest.read_shadow_hash('alice')))

        refused = self.openstack('server', 'user', 'password', 'set',
                                 server, 'no:body', '--password-stdin',
                                 stdin=b'pw\n')
        self.assertNotEqual(0, refused.returncode)
        message = refused.stderr.decode().strip().splitlines()
        self.assertEqual(1, len(message), refused.stderr)
        self.assertIn('HTTP 400', message[0])

    def _wait_for_image(self, image_id, timeout=120):
        ctxt = self.cloud.admin_context()
        deadline = time.monotonic() + timeout
        while True:
            image = self.cloud.images.show(ctxt, image_id)
            if image['status'] == 'active':
                self.wait_for_idle()
                return image
            self.assertLess(time.monotonic(), deadline,
                            'image %s still %s' % (image_id, image['status']))
            time.sleep(0.2)
