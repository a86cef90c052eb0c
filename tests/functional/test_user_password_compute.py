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

"""Per-user passwords through nova's real driver on a real guest.

``qga_ext.LibvirtDriver.set_admin_password()`` runs against qemu:///system
on a lab guest (real libvirt, QEMU under TCG, qemu-ga and the guest's shadow
``chpasswd``), for a real nova ``Instance`` whose uuid is the domain's. The
guest's /etc/shadow is read back through the lab's own raw agent path and
the hashes are verified with the host's libcrypt.

``UserPasswordDriverTest`` calls the driver method directly;
``ThroughNovaManagerTest`` goes through the plugin's RPC endpoint and nova's
real ``ComputeManager.set_admin_password`` (database, task_state, instance
action events, faults) on the same kind of guest.
"""

import logging
import os
import subprocess
import sys
import time

import fixtures
from nova.compute import manager as compute_manager
from nova.compute import task_states
from nova.compute import vm_states
from nova import context as nova_context
from nova import exception as nova_exception
from nova import objects
from nova import test
from oslo_config import cfg
import testtools

from nova_qga_ext import conf as qga_conf
from nova_qga_ext import exception
from nova_qga_ext import lab as qga_lab
from nova_qga_ext.lab import compute as lab_compute
from nova_qga_ext import rpc
from tests.functional import lab as lab_fixtures

CONF = cfg.CONF

# nova's test base poisons os.uname; ctypes needs it to find libcrypt for
# the lab's hash check.
_UNAME = os.uname


def _report(line):
    print(line, file=sys.stderr)


class _OwnGuest:
    """One guest for the class: each test leaves it usable for the next."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.guest_fixture = lab_fixtures.LabGuestFixture('userpw')
        cls.guest_fixture.setUp()
        cls.guest = cls.guest_fixture.guest

    @classmethod
    def tearDownClass(cls):
        cls.guest_fixture.cleanUp()
        super().tearDownClass()


class UserPasswordDriverTest(_OwnGuest, testtools.TestCase):

    def setUp(self):
        super().setUp()
        # Generous: the guest hashes with yescrypt under TCG, ~1.5 s on an
        # idle host and several times that on a busy CI machine.
        compute = self.useFixture(lab_compute.RealDriverFixture(
            ['user_password'], agent_timeout=30))
        self.driver = compute.driver
        self.conf = compute.conf
        self.logs = self.useFixture(fixtures.FakeLogger(level=logging.DEBUG))
        self.instance = lab_compute.lab_instance(self.guest)

    def set_password(self, password, **kwargs):
        started = time.monotonic()
        self.driver.set_admin_password(self.instance, password, **kwargs)
        _report('set_admin_password(%s) took %.0f ms' % (
            ', '.join('%s=%s' % item for item in kwargs.items()),
            (time.monotonic() - started) * 1000))
        self.assertNotIn(password, self.logs.output)

    def test_alices_password_changes_and_roots_does_not(self):
        root = self.guest.read_shadow_hash('root')
        alice = self.guest.read_shadow_hash('alice')

        self.set_password('Al1ce new pw:with colon', user_name='alice')

        changed = self.guest.read_shadow_hash('alice')
        self.assertNotEqual(alice, changed)
        self.assertTrue(qga_lab.password_matches('Al1ce new pw:with colon',
                                                 changed))
        self.assertFalse(qga_lab.password_matches(qga_lab.INITIAL_PASSWORD,
                                                  changed))
        self.assertEqual(root, self.guest.read_shadow_hash('root'))

    def test_crypted_hash_stored_verbatim(self):
        hashed = subprocess.run(
            ['openssl', 'passwd', '-6', '-salt', 'userpwft', 'from-a-hash'],
            capture_output=True, text=True, check=True).stdout.strip()
        root = self.guest.read_shadow_hash('root')

        self.set_password(hashed, user_name='alice', crypted=True)

        self.assertEqual(hashed, self.guest.read_shadow_hash('alice'))
        self.assertTrue(qga_lab.password_matches('from-a-hash', hashed))
        self.assertEqual(root, self.guest.read_shadow_hash('root'))

    def test_without_user_name_nova_sets_roots(self):
        alice = self.guest.read_shadow_hash('alice')

        self.set_password('r00t-by-nova')

        self.assertTrue(qga_lab.password_matches(
            'r00t-by-nova', self.guest.read_shadow_hash('root')))
        self.assertEqual(alice, self.guest.read_shadow_hash('alice'))

    def test_unknown_user_reports_the_guests_reason(self):
        alice = self.guest.read_shadow_hash('alice')

        error = self.assertRaises(
            nova_exception.Invalid, self.driver.set_admin_password,
            self.instance, 'whatever-pw', user_name='nobody')

        self.assertEqual(exception.COMMAND_FAILED,
                         exception.agent_error_tag(error))
        self.assertIn('guest-set-user-password', error.format_message())
        self.assertNotIn('whatever-pw', error.format_message())
        self.assertEqual(alice, self.guest.read_shadow_hash('alice'))

    def test_forbidden_characters_never_reach_the_guest(self):
        alice = self.guest.read_shadow_hash('alice')
        shadow = self.guest.check_shell('cat /etc/shadow')
        # A crypted "hash" with ':' would rewrite alice's shadow ageing
        # fields if it reached chpasswd -e.
        for kwargs, password in (
                ({'user_name': 'alice:0'}, 'pw'),
                ({'user_name': 'alice\nroot'}, 'pw'),
                ({'user_name': 'alice'}, 'pw\nroot:pw'),
                ({'user_name': 'alice', 'crypted': True},
                 alice + ':0:0:1:1:1:1')):
            self.assertRaises(nova_exception.Invalid,
                              self.driver.set_admin_password,
                              self.instance, password, **kwargs)
        self.assertEqual(shadow, self.guest.check_shell('cat /etc/shadow'))

    def test_hung_agent_times_out_as_504_cause(self):
        self.conf.config(agent_timeout=3, group='qga_ext')
        self.guest.pause_agent()
        self.addCleanup(self.guest.resume_agent)
        started = time.monotonic()

        error = self.assertRaises(
            nova_exception.InstanceAgentNotEnabled,
            self.driver.set_admin_password, self.instance, 'pw-while-hung',
            user_name='alice')

        elapsed = time.monotonic() - started
        _report('hung agent: failed after %.1f s' % elapsed)
        self.assertEqual(exception.TIMEOUT, exception.agent_error_tag(error))
        self.assertGreaterEqual(elapsed, 3)
        self.assertLess(elapsed, 3 + 10)


class ThroughNovaManagerTest(_OwnGuest, test.TestCase):

    def setUp(self):
        super().setUp()
        self.useFixture(fixtures.MonkeyPatch('os.uname', _UNAME))
        qga_conf.register_opts(CONF)
        self.flags(virt_type='qemu', connection_uri='qemu:///system',
                   group='libvirt')
        self.flags(extensions=['user_password'], agent_timeout=30,
                   group='qga_ext')
        self.logs = self.useFixture(fixtures.FakeLogger(
            level=logging.DEBUG, nuke_handlers=False))
        self.manager = compute_manager.ComputeManager(
            compute_driver='qga_ext.LibvirtDriver')
        self.endpoint, = [
            endpoint for endpoint in self.manager.additional_endpoints
            if getattr(endpoint, 'target', None) == rpc.TARGET and
            hasattr(endpoint, 'set_admin_password')]
        self.context = nova_context.get_admin_context()
        self.instance = objects.Instance(
            self.context, uuid=self.guest.uuid, project_id='project',
            user_id='user', host=CONF.host, vm_state=vm_states.ACTIVE,
            task_state=None, os_type='linux', image_ref='',
            system_metadata={'image_hw_qemu_guest_agent': 'yes',
                             'image_disk_format': 'qcow2',
                             'image_container_format': 'bare'})
        self.instance.create()

    def change_password(self, password, user_name):
        """What the API does, then the RPC call, as in production."""
        self.instance.task_state = task_states.UPDATING_PASSWORD
        self.instance.save(expected_task_state=[None])
        objects.InstanceAction.action_start(
            self.context, self.instance.uuid, 'changePassword')
        self.endpoint.set_admin_password(self.context, self.instance,
                                         password, user_name, False)

    def events(self):
        action = objects.InstanceAction.get_by_request_id(
            self.context, self.instance.uuid, self.context.request_id)
        return [(event.event, event.result) for event in
                objects.InstanceActionEventList.get_by_action(
                    self.context, action.id)]

    def test_alices_password_through_nova_manager(self):
        root = self.guest.read_shadow_hash('root')

        self.change_password('through-the-manager', 'alice')

        self.assertTrue(qga_lab.password_matches(
            'through-the-manager', self.guest.read_shadow_hash('alice')))
        self.assertEqual(root, self.guest.read_shadow_hash('root'))
        self.instance.refresh()
        self.assertIsNone(self.instance.task_state)
        self.assertEqual([('compute_set_admin_password', 'Success')],
                         self.events())
        self.assertNotIn('through-the-manager', self.logs.output)

    def test_guest_refusal_reported_with_its_reason(self):
        error = self.assertRaises(
            nova_exception.InstancePasswordSetFailed, self.change_password,
            'never-set-anywhere', 'nobody')

        self.assertIn('guest-set-user-password', error.format_message())
        self.assertNotIn('error setting admin password',
                         error.format_message())
        self.instance.refresh()
        self.assertIsNone(self.instance.task_state)
        self.assertEqual([('compute_set_admin_password', 'Error')],
                         self.events())
        fault = objects.InstanceFault.get_latest_for_instance(
            self.context, self.instance.uuid)
        for text in (error.format_message(), fault.message, fault.details,
                     self.logs.output):
            self.assertNotIn('never-set-anywhere', text)
