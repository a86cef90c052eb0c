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

import threading
from unittest import mock

import fixtures
from nova import exception as nova_exception
from nova import objects
from nova import test
from nova.tests import fixtures as nova_fixtures
from nova.virt import fake
from oslo_config import cfg

from nova_qga_ext import agent
from nova_qga_ext import conf as qga_conf
from nova_qga_ext import exception
from nova_qga_ext.extensions import base
from nova_qga_ext.extensions import manager
from nova_qga_ext import rpc
from nova_qga_ext.virt import driver


class RecordingExtension(base.Extension):
    name = 'recording'
    DRIVER_METHODS = ('set_admin_password',)

    def set_admin_password(self, original, instance, new_pass):
        self.calls = (original, instance, new_pass)
        return 'patched'

    def rpc_endpoint(self, virt_driver):
        return mock.sentinel.endpoint


class PassiveExtension(base.Extension):
    name = 'passive'


class ComputeVirtAPI(fake.FakeVirtAPI):
    """A virtapi whose compute manager serves RPC endpoints."""

    def __init__(self):
        super().__init__()
        self._compute = mock.Mock(additional_endpoints=[])


class TestLibvirtDriver(test.NoDBTestCase):

    def setUp(self):
        super().setUp()
        self.useFixture(nova_fixtures.LibvirtFixture())
        qga_conf.register_opts(cfg.CONF)
        self.useFixture(fixtures.MockPatchObject(
            manager, 'installed', return_value={
                'recording': RecordingExtension,
                'passive': PassiveExtension}))
        self.flags(extensions=['recording', 'passive'], group='qga_ext')

    def test_extensions_patch_the_driver(self):
        virt_driver = driver.LibvirtDriver(ComputeVirtAPI())
        recording = virt_driver.extensions[0]

        result = virt_driver.set_admin_password(mock.sentinel.inst, 'pw')

        self.assertEqual('patched', result)
        original, instance, new_pass = recording.calls
        self.assertEqual(mock.sentinel.inst, instance)
        self.assertEqual('pw', new_pass)
        # The wrapped method is nova's own, bound to this driver.
        self.assertEqual(virt_driver, original.__self__)
        self.assertEqual('set_admin_password', original.__name__)

    def test_endpoints_are_served_by_the_compute_manager(self):
        virtapi = ComputeVirtAPI()

        driver.LibvirtDriver(virtapi)

        ping, endpoint = virtapi._compute.additional_endpoints
        self.assertIsInstance(ping, rpc.PingEndpoint)
        self.assertEqual({'extensions': ['recording', 'passive']},
                         ping.ping(mock.sentinel.context))
        self.assertEqual(rpc.TARGET, ping.target)
        self.assertEqual(mock.sentinel.endpoint, endpoint)

    def test_without_compute_manager_no_endpoints(self):
        # nova's own driver unit tests build drivers on a bare virtapi.
        virt_driver = driver.LibvirtDriver(fake.FakeVirtAPI())

        self.assertEqual(2, len(virt_driver.extensions))

    def test_unknown_extension_stops_the_driver(self):
        self.flags(extensions=['recording', 'guest_exce'], group='qga_ext')

        error = self.assertRaises(manager.UnknownExtension,
                                  driver.LibvirtDriver, ComputeVirtAPI())

        self.assertIn('guest_exce', str(error))
        self.assertIn('installed extensions are: passive, recording',
                      str(error))

    def test_only_enabled_extensions_are_loaded(self):
        self.flags(extensions=['passive'], group='qga_ext')

        virt_driver = driver.LibvirtDriver(ComputeVirtAPI())

        self.assertEqual(['passive'],
                         [ext.name for ext in virt_driver.extensions])
        self.assertNotIn('set_admin_password', vars(virt_driver))

    def test_guest_agent_uses_the_domain_and_timeout(self):
        self.flags(agent_timeout=7, group='qga_ext')
        virt_driver = driver.LibvirtDriver(ComputeVirtAPI())
        guest = mock.Mock()
        instance = objects.Instance(
            uuid='6e3e8c5e-8a36-4b3b-9e4f-1b2b6e9a1c01')

        with mock.patch.object(virt_driver._host, 'get_guest',
                               return_value=guest) as get_guest:
            guest_agent = virt_driver.guest_agent(instance)

        get_guest.assert_called_once_with(instance)
        self.assertIsInstance(guest_agent, agent.GuestAgent)
        self.assertIs(guest._domain, guest_agent._domain)
        self.assertEqual(7, guest_agent.timeout)


class TestAgentErrorTranslation(test.NoDBTestCase):

    def _translate(self, error):
        with driver.agent_errors_as_nova_exceptions():
            raise error

    def test_each_agent_error_has_a_nova_type_and_tag(self):
        cases = [
            (agent.AgentNotConfigured(),
             nova_exception.QemuGuestAgentNotEnabled,
             exception.NOT_CONFIGURED),
            (agent.AgentNotConnected(),
             nova_exception.InstanceAgentNotEnabled,
             exception.NOT_CONNECTED),
            (agent.AgentTimeout(command='guest-exec', timeout=3),
             nova_exception.InstanceAgentNotEnabled, exception.TIMEOUT),
            (agent.AgentCommandDisabled(command='guest-exec'),
             nova_exception.InstanceAgentNotEnabled,
             exception.COMMAND_DISABLED),
            (agent.ExecPidUnknown(pid=42), nova_exception.NotFound,
             exception.PID_UNKNOWN),
            (agent.AgentCommandFailed(command='guest-exec', reason='boom'),
             nova_exception.Invalid, exception.COMMAND_FAILED),
        ]
        for error, nova_class, tag in cases:
            translated = self.assertRaises(nova_class, self._translate, error)
            self.assertIs(type(translated), nova_class)
            self.assertEqual(tag, exception.agent_error_tag(translated))
            self.assertEqual(error.format_message(),
                             translated.format_message())
            self.assertIsNone(translated.__cause__)

    def test_other_exceptions_pass_through(self):
        self.assertRaises(KeyError, self._translate, KeyError('x'))


class TestInstanceLock(test.NoDBTestCase):

    def _held_elsewhere(self, lock):
        """Whether another thread fails to take ``lock`` within 0.2 s."""
        acquired = threading.Event()

        def take():
            with lock:
                acquired.set()
        thread = threading.Thread(target=take)
        thread.start()
        blocked = not acquired.wait(0.2)
        return blocked, thread

    def test_same_instance_is_serialised_others_are_not(self):
        one = objects.Instance(uuid='00000000-0000-0000-0000-000000000001')
        two = objects.Instance(uuid='00000000-0000-0000-0000-000000000002')

        with driver.LibvirtDriver.instance_lock(one):
            same_blocked, same = self._held_elsewhere(
                driver.LibvirtDriver.instance_lock(one))
            other_blocked, other = self._held_elsewhere(
                driver.LibvirtDriver.instance_lock(two))
        same.join(5)
        other.join(5)

        self.assertTrue(same_blocked)
        self.assertFalse(other_blocked)
