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

"""Unit tests of the quiesced_snapshot compute side.

The driver here performs, in nova's order, the calls of nova's
``LibvirtDriver.snapshot()`` that the extension wraps; the functional tests
run nova's real driver (fakelibvirt and a real guest).
"""

import contextlib
import logging
import threading
import time
from unittest import mock

import fixtures
from nova import conf as nova_conf
from nova import exception as nova_exception
from nova import utils
from oslo_config import fixture as config_fixture
import testtools

from nova_qga_ext import agent
from nova_qga_ext import conf as qga_conf
from nova_qga_ext import exception
from nova_qga_ext.extensions import quiesced_snapshot as qs

CONF = nova_conf.CONF

NOVA_NS = 'http://openstack.org/xmlns/libvirt/nova/1.1'

# The class, kept for specs where the tests replace it in the module.
_GuestAgent = agent.GuestAgent


def _domain_xml(nova=True, agent_state='connected'):
    metadata = ('<metadata><nova:instance xmlns:nova="%s"/></metadata>'
                % NOVA_NS if nova else '')
    channel = ''
    if agent_state is not None:
        channel = ("<channel type='unix'><target type='virtio' "
                   "name='org.qemu.guest_agent.0' state='%s'/></channel>"
                   % agent_state)
    return '<domain>%s<devices>%s</devices></domain>' % (metadata, channel)


def _blocking_sleep(seconds):
    """Block the calling thread as a libvirt call does."""
    if utils.concurrency_mode_threading():
        time.sleep(seconds)
        return
    # In eventlet mode nova runs libvirt calls in tpool's native threads,
    # which leaves the hub, and so a green watchdog timer, running.
    from eventlet import patcher
    from eventlet import tpool
    tpool.execute(patcher.original('time').sleep, seconds)


class FakeNovaDriver:
    """What the extension relies on of nova's driver, in nova's order.

    ``events`` records the calls that matter: the mirror, freezes, thaws,
    the end of the block job, the domain's redefinition and the upload.
    """

    def __init__(self):
        self.events = []
        self.agent = mock.Mock(spec=agent.GuestAgent)
        self.agent.fs_freeze.side_effect = self._recorder('freeze', 3)
        self.agent.fs_thaw.side_effect = self._recorder('thaw', 3)
        self.agent.fs_freeze_status.return_value = 'thawed'
        self._image_api = mock.Mock()
        self._image_api.get.return_value = {'properties': {
            qs.QUIESCE_PROPERTY: qs.QUIESCE_REQUIRED}}
        self._image_api.update.side_effect = self._recorder('upload')
        self._host = mock.Mock()
        self._host.write_instance_config.side_effect = self._recorder(
            'redefine')
        self.device = mock.Mock()
        self.device.rebase.side_effect = self._recorder('mirror')
        self.device.abort_job.side_effect = self._recorder('abort_job')
        self.guest = mock.Mock()
        self.guest.get_block_device.return_value = self.device
        self.qemu_api = mock.sentinel.qemu_api
        self.can_quiesce = mock.Mock()
        self.live = True

    def _recorder(self, name, result=None):
        def record(*args, **kwargs):
            self.events.append(name)
            return result
        return record

    def guest_agent(self, instance):
        return self.agent

    @contextlib.contextmanager
    def instance_lock(self, instance):
        self.events.append('lock')
        try:
            yield
        finally:
            self.events.append('unlock')

    def _can_quiesce(self, instance, image_meta):
        self.can_quiesce(instance, image_meta)

    def init_host(self, host):
        self.events.append('init_host')

    def snapshot(self, context, instance, image_id, update_task_state):
        metadata = self._create_snapshot_metadata(
            instance.image_meta, instance, 'qcow2', 'snap')
        if self.live:
            self._live_snapshot(context, instance, self.guest, '/disk',
                                '/out', 'qcow2', 'qcow2', instance.image_meta)
        self._image_api.update(context, image_id, metadata, b'image')

    def _create_snapshot_metadata(self, image_meta, instance, img_fmt,
                                  snp_name):
        return {'name': snp_name, 'properties': {'owner_id': 'project'}}

    def _live_snapshot(self, context, instance, guest, disk_path, out_path,
                       source_format, image_format, image_meta):
        device = guest.get_block_device(disk_path)
        with contextlib.suppress(Exception):
            device.abort_job()
        try:
            device.rebase('/out.delta', copy=True, reuse_ext=True,
                          shallow=True)
        finally:
            quiesced = False
            try:
                self.quiesce(context, instance, image_meta)
                quiesced = True
            except nova_exception.NovaException:
                self.events.append('quiesce skipped')
            device.abort_job()
            self._host.write_instance_config('<domain/>')
            if quiesced:
                self.unquiesce(context, instance, image_meta)

    def quiesce(self, context, instance, image_meta):
        self.events.append('nova freeze')

    def unquiesce(self, context, instance, image_meta):
        self.events.append('nova thaw')


class QuiescedSnapshotTestCase(testtools.TestCase):

    def setUp(self):
        super().setUp()
        qga_conf.register_opts(CONF)
        qga_conf.register_opts(CONF, qs.CONFIG_OPTS)
        self.conf = self.useFixture(config_fixture.Config(CONF))
        self.useFixture(fixtures.MockPatch(
            'nova.compute.utils.EventReporter'))
        self.driver = FakeNovaDriver()
        self.extension = qs.QuiescedSnapshot(CONF)
        self.extension.patch_driver(self.driver)
        self.instance = mock.Mock(uuid='8f3c0e2a-5b7d-4c11-9e4f-2a6b8d0c1e3f')
        self.log = self.useFixture(fixtures.FakeLogger(level=logging.INFO))

    def snapshot(self):
        self.driver.snapshot(mock.sentinel.context, self.instance,
                             'image-id', mock.Mock())

    def uploaded_properties(self):
        self.driver._image_api.update.assert_called_once()
        return self.driver._image_api.update.call_args.args[2]['properties']


class SnapshotTest(QuiescedSnapshotTestCase):

    def test_frozen_only_at_the_end_of_the_block_job(self):
        self.snapshot()

        self.assertEqual(
            ['abort_job', 'mirror', 'lock', 'freeze', 'abort_job', 'thaw',
             'unlock', 'redefine', 'upload'], self.driver.events)

    def test_properties_recorded(self):
        self.snapshot()

        properties = self.uploaded_properties()
        self.assertEqual('3', properties[qs.FROZEN_FILESYSTEMS_PROPERTY])
        window = properties[qs.FREEZE_WINDOW_PROPERTY]
        self.assertRegex(window, r'^\d+\.\d$')
        self.assertEqual('project', properties['owner_id'])
        self.assertIn('were frozen for at most %s ms' % window,
                      self.log.output)

    def test_window_measures_freeze_to_thaw(self):
        self.driver.agent.fs_thaw.side_effect = lambda: time.sleep(0.05)

        self.snapshot()

        window = float(self.uploaded_properties()[qs.FREEZE_WINDOW_PROPERTY])
        self.assertGreaterEqual(window, 50)
        self.assertLess(window, 1000)

    def test_unmarked_image_is_nova_s_snapshot(self):
        self.driver._image_api.get.return_value = {'properties': {}}

        self.snapshot()

        self.assertEqual(
            ['abort_job', 'mirror', 'nova freeze', 'abort_job', 'redefine',
             'nova thaw', 'upload'], self.driver.events)
        self.assertNotIn(qs.FREEZE_WINDOW_PROPERTY,
                         self.uploaded_properties())
        self.driver.can_quiesce.assert_not_called()

    def test_other_instances_quiesce_untouched(self):
        other = mock.Mock(uuid='another')
        self.driver.device.rebase.side_effect = lambda *a, **k: (
            self.driver.quiesce(None, other, None),
            self.driver.unquiesce(None, other, None))

        self.snapshot()

        self.assertIn('nova freeze', self.driver.events)
        self.assertIn('nova thaw', self.driver.events)
        self.assertEqual(1, self.driver.agent.fs_freeze.call_count)

    def test_freeze_failure_fails_snapshot_after_nova_cleanup(self):
        self.driver.agent.fs_freeze.side_effect = agent.AgentTimeout(
            command='guest-fsfreeze-freeze', timeout=10)

        error = self.assertRaises(nova_exception.InstanceQuiesceFailed,
                                  self.snapshot)

        self.assertIn('could not freeze', error.format_message())
        # Thaw attempted (a timed-out freeze may still happen), nova's
        # cleanup ran, nothing uploaded.
        self.assertEqual(
            ['mirror', 'lock', 'thaw', 'unlock', 'quiesce skipped',
             'abort_job', 'redefine'], self.driver.events[1:])
        self.driver.agent.fs_thaw.assert_called_once_with()

    def test_thaw_failure_fails_snapshot(self):
        self.driver.agent.fs_thaw.side_effect = agent.AgentCommandFailed(
            command='guest-fsfreeze-thaw', reason='VSS_E_HOLD_WRITES_TIMEOUT')

        error = self.assertRaises(nova_exception.InstanceQuiesceFailed,
                                  self.snapshot)

        self.assertIn('could not thaw', error.format_message())
        self.assertNotIn('upload', self.driver.events)
        self.assertIn('unlock', self.driver.events)

    def test_thawed_when_ending_the_block_job_fails(self):
        failure = RuntimeError('block job abort failed')
        self.driver.device.abort_job.side_effect = [None, failure]

        error = self.assertRaises(RuntimeError, self.snapshot)

        self.assertIs(failure, error)
        self.assertEqual(['freeze', 'thaw', 'unlock'],
                         self.driver.events[-3:])

    def test_thawed_when_the_mirror_fails(self):
        self.driver.device.rebase.side_effect = RuntimeError('mirror failed')

        self.assertRaises(RuntimeError, self.snapshot)

        self.driver.agent.fs_thaw.assert_called_once_with()
        self.assertNotIn('upload', self.driver.events)

    def test_unexpected_freeze_error_lets_nova_clean_up(self):
        # nova's cleanup only catches nova exceptions; anything else would
        # leave the mirror running and the domain undefined.
        self.driver.agent.fs_freeze.side_effect = RuntimeError('bug')

        error = self.assertRaises(nova_exception.InstanceQuiesceFailed,
                                  self.snapshot)

        self.assertIn('RuntimeError: bug', error.format_message())
        self.assertEqual(['thaw', 'unlock', 'quiesce skipped', 'abort_job',
                          'redefine'], self.driver.events[-5:])

    def test_no_live_snapshot_fails(self):
        self.driver.live = False

        error = self.assertRaises(nova_exception.InstanceQuiesceFailed,
                                  self.snapshot)

        self.assertIn('no point to freeze', error.format_message())
        self.driver.agent.fs_freeze.assert_not_called()

    def test_refused_before_copying(self):
        self.driver.agent.require.side_effect = agent.AgentCommandDisabled(
            command='guest-fsfreeze-freeze')

        error = self.assertRaises(nova_exception.InstanceAgentNotEnabled,
                                  self.snapshot)

        self.assertEqual(exception.COMMAND_DISABLED,
                         exception.agent_error_tag(error))
        self.assertEqual([], self.driver.events)

    def test_reported_as_instance_action_event(self):
        reporter = self.useFixture(fixtures.MockPatch(
            'nova.compute.utils.EventReporter')).mock

        self.snapshot()

        reporter.assert_called_once_with(
            mock.sentinel.context, qs.EVENT, CONF.host, self.instance.uuid)
        reporter.return_value.__enter__.assert_called_once_with()


class WatchdogTest(QuiescedSnapshotTestCase):

    def test_fires_while_the_snapshot_is_stuck(self):
        self.conf.config(freeze_timeout=0.1, group='qga_ext')
        thawed_while_stuck = []

        def stuck_abort_job(*args, **kwargs):
            if 'freeze' in self.driver.events:
                _blocking_sleep(0.6)
                thawed_while_stuck.append('thaw' in self.driver.events)

        self.driver.device.abort_job.side_effect = stuck_abort_job

        error = self.assertRaises(nova_exception.InstanceQuiesceFailed,
                                  self.snapshot)

        self.assertEqual([True], thawed_while_stuck)
        self.assertIn('freeze_timeout', error.format_message())
        self.driver.agent.fs_thaw.assert_called_once_with()
        self.assertIn('frozen for longer than 0.1 s',
                      self.log.output)

    def test_cancelled_by_the_thaw(self):
        self.conf.config(freeze_timeout=0.1, group='qga_ext')

        self.snapshot()
        time.sleep(0.3)

        self.driver.agent.fs_thaw.assert_called_once_with()
        self.assertIn(qs.FREEZE_WINDOW_PROPERTY, self.uploaded_properties())

    def test_hung_freeze_reported_as_such_not_as_watchdog_thaw(self):
        guest_agent = mock.Mock(spec=agent.GuestAgent)

        def hung_freeze():
            # The watchdog fires while the freeze is still waited for.
            _blocking_sleep(0.3)
            raise agent.AgentTimeout(command='guest-fsfreeze-freeze',
                                     timeout=2)
        guest_agent.fs_freeze.side_effect = hung_freeze
        guest_agent.fs_thaw.side_effect = agent.AgentTimeout(
            command='guest-fsfreeze-thaw', timeout=2)
        window = qs.FreezeWindow(guest_agent, timeout=0.05)

        error = self.assertRaises(nova_exception.InstanceQuiesceFailed,
                                  window.freeze)

        self.assertIn('could not freeze', error.format_message())
        self.assertIn('guest-fsfreeze-freeze', error.format_message())
        self.assertNotIn('thawed by the watchdog', error.format_message())
        guest_agent.fs_thaw.assert_called_once_with()

    def test_failed_watchdog_thaw_not_reported_as_thawed(self):
        guest_agent = mock.Mock(spec=agent.GuestAgent)
        guest_agent.fs_thaw.side_effect = agent.AgentTimeout(
            command='guest-fsfreeze-thaw', timeout=2)
        window = qs.FreezeWindow(guest_agent, timeout=0.05)
        window.freeze()
        time.sleep(0.3)

        self.assertIn('could not thaw', window.error.format_message())
        self.assertNotIn('thawed by the watchdog',
                         window.error.format_message())

    def test_window_thaws_once(self):
        guest_agent = mock.Mock(spec=agent.GuestAgent)
        window = qs.FreezeWindow(guest_agent, timeout=0.05)
        window.freeze()
        threads = [threading.Thread(target=window.thaw) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        time.sleep(0.1)

        guest_agent.fs_thaw.assert_called_once_with()
        self.assertIsNone(window.error)


class CheckTest(QuiescedSnapshotTestCase):

    def test_ready(self):
        self.extension.check(self.instance)

        self.driver.agent.require.assert_called_once_with(
            'guest-fsfreeze-freeze', 'guest-fsfreeze-thaw',
            'guest-fsfreeze-status')
        self.driver.can_quiesce.assert_called_once_with(
            self.instance, self.instance.image_meta)

    def test_endpoint(self):
        endpoint = self.extension.rpc_endpoint(self.driver)
        self.driver.agent.fs_freeze_status.return_value = 'frozen'

        error = self.assertRaises(nova_exception.InstanceQuiesceFailed,
                                  endpoint.check_quiesce,
                                  mock.sentinel.context, self.instance)

        self.assertIn('frozen already', error.format_message())

    def test_agent_not_connected(self):
        self.driver.agent.require.side_effect = agent.AgentNotConnected()

        error = self.assertRaises(nova_exception.InstanceAgentNotEnabled,
                                  self.extension.check, self.instance)

        self.assertEqual(exception.NOT_CONNECTED,
                         exception.agent_error_tag(error))

    def test_quiesce_not_supported(self):
        self.driver.can_quiesce.side_effect = (
            nova_exception.InstanceQuiesceNotSupported(instance_id='x'))

        self.assertRaises(nova_exception.InstanceQuiesceFailed,
                          self.extension.check, self.instance)

    def test_no_live_snapshot_on_host(self):
        for group, name, value in (
                ('libvirt', 'images_type', 'rbd'),
                ('libvirt', 'images_type', 'lvm'),
                ('workarounds', 'disable_libvirt_livesnapshot', True)):
            with config_fixture.Config(CONF) as conf:
                conf.config(group=group, **{name: value})
                self.assertRaises(nova_exception.InstanceQuiesceFailed,
                                  self.extension.check, self.instance)
        self.driver.agent.require.assert_not_called()


class InitHostTest(QuiescedSnapshotTestCase):

    def setUp(self):
        super().setUp()
        self.agents = {}
        self.guest_agent = self.useFixture(fixtures.MockPatchObject(
            qs.agent, 'GuestAgent', side_effect=self._agent)).mock

    def _agent(self, domain, **kwargs):
        return self.agents[domain]

    def guest(self, name, xml, status=None):
        guest = mock.Mock(uuid=name, _domain=name)
        guest.get_xml_desc.return_value = xml
        guest_agent = self.agents[name] = mock.Mock(spec=_GuestAgent)
        if isinstance(status, Exception):
            guest_agent.fs_freeze_status.side_effect = status
        else:
            guest_agent.fs_freeze_status.return_value = status
        guest_agent.fs_thaw.return_value = 2
        return guest

    def test_thaws_frozen_instances(self):
        self.driver._host.list_guests.return_value = [
            self.guest('frozen', _domain_xml(), 'frozen'),
            self.guest('thawed', _domain_xml(), 'thawed'),
            self.guest('hung', _domain_xml(), agent.AgentTimeout(
                command='guest-fsfreeze-status', timeout=2)),
            self.guest('agent-down', _domain_xml(
                agent_state='disconnected')),
            self.guest('no-agent', _domain_xml(agent_state=None)),
            self.guest('not-nova', _domain_xml(nova=False), 'frozen'),
        ]

        self.driver.init_host('compute1')

        self.assertEqual(['init_host'], self.driver.events)
        self.agents['frozen'].fs_thaw.assert_called_once_with()
        for name in ('thawed', 'hung', 'agent-down', 'no-agent', 'not-nova'):
            self.agents[name].fs_thaw.assert_not_called()
        for name in ('agent-down', 'no-agent', 'not-nova'):
            self.agents[name].fs_freeze_status.assert_not_called()
        self.assertIn('Thawed 2 filesystems of instance frozen, found '
                      'frozen at start-up', self.log.output)
        self.assertIn('Could not check whether instance hung is frozen',
                      self.log.output)
        # A hung agent costs seconds, not the agent timeout.
        self.assertEqual({qs._STARTUP_PROBE_TIMEOUT},
                         {call.kwargs['timeout']
                          for call in self.guest_agent.call_args_list})


class NonInheritablePropertiesTest(testtools.TestCase):

    def test_added_to_the_operator_s_list(self):
        conf = self.useFixture(config_fixture.Config(CONF))
        conf.config(non_inheritable_image_properties=[
            'bittorrent', qs.FREEZE_WINDOW_PROPERTY])

        qs._make_properties_non_inheritable(CONF)
        qs._make_properties_non_inheritable(CONF)

        self.assertEqual(
            ['bittorrent', qs.FREEZE_WINDOW_PROPERTY, qs.QUIESCE_PROPERTY,
             qs.FROZEN_FILESYSTEMS_PROPERTY],
            CONF.non_inheritable_image_properties)
