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

"""The fault matrix on the real lab: faults injected mid-operation.

``qga_ext.LibvirtDriver`` (``RealDriverFixture``) drives real guests on
qemu:///system while qemu-ga is killed or stopped, the guest is powered off,
libvirtd restarts, or the process holding a freeze dies. Each cell checks
the nova exception the compute side raises (what nova-api turns into the
user's status), that no call outlives its timeout, and the guest afterwards
through the lab's raw agent path: never left frozen, never a half-set
password. The cells the lab cannot host (RPC timeout, a compute node
without the plugin, concurrent calls) are in tests/functional/api.

The measured times go to stderr.
"""

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import types
from unittest import mock

import fixtures
import libvirt
from nova import context as nova_context
from nova import exception as nova_exception
from nova.virt.libvirt import config as libvirt_config
from nova.virt.libvirt import guest as libvirt_guest
from oslo_config import cfg
import testtools

from nova_qga_ext import conf as qga_conf
from nova_qga_ext import exception
from nova_qga_ext.extensions import guest_exec
from nova_qga_ext.extensions import quiesced_snapshot as qs
from nova_qga_ext import lab as qga_lab
from nova_qga_ext.lab import compute
from nova_qga_ext.lab import libvirtd
from tests.functional import lab as lab_fixtures

CONF = cfg.CONF

AGENT_TIMEOUT = 2
FREEZE_TIMEOUT = 1.0
# What the host may add to a timeout: libvirt's agent job handover and one
# agent round trip under TCG on a busy two-core machine.
MARGIN = 1.5

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def _report(line):
    print('fault matrix: ' + line, file=sys.stderr)


def _undefine(uuid):
    with contextlib.suppress(libvirt.libvirtError):
        lab_fixtures.shared_lab().connect().lookupByUUIDString(
            uuid).undefine()


def _mark_as_nova_instance(guest):
    # nova's metadata is how start-up tells its instances from other domains.
    guest.domain.setMetadata(
        libvirt.VIR_DOMAIN_METADATA_ELEMENT, '<instance/>', 'nova',
        libvirt_config.NOVA_NS, libvirt.VIR_DOMAIN_AFFECT_LIVE)


def _stuck_while_frozen(seconds, on_stuck=None):
    """BlockDevice.abort_job that blocks when it would end the mirror.

    That is the moment the guest is frozen in a quiesced snapshot.
    """
    abort_job = libvirt_guest.BlockDevice.abort_job

    def stuck_abort_job(device, *args, **kwargs):
        if device._guest._domain.blockJobInfo(device._disk, 0):
            if on_stuck is not None:
                on_stuck()
            time.sleep(seconds)
        return abort_job(device, *args, **kwargs)
    return stuck_abort_job


def frozen_compute_main(uuid):
    """A nova-compute that freezes a guest for a snapshot and gets stuck.

    Run in a child process, which the test SIGKILLs once this printed
    "frozen": the snapshot thread and its watchdog die with it.
    """
    qga_conf.register_opts(CONF, qs.CONFIG_OPTS)
    fixture = compute.RealDriverFixture(['quiesced_snapshot'],
                                        freeze_timeout=3600)
    fixture.setUp()
    fixture.images.add('image', {qs.QUIESCE_PROPERTY: qs.QUIESCE_REQUIRED})
    instance = compute.lab_instance(types.SimpleNamespace(uuid=uuid))

    def frozen():
        print('frozen', flush=True)

    with mock.patch.object(libvirt_guest.BlockDevice, 'abort_job',
                           _stuck_while_frozen(3600, frozen)):
        fixture.driver.snapshot(nova_context.get_admin_context(), instance,
                                'image', mock.Mock())


def _boot_many(lab, prefixes, attempts=2):
    # A TCG guest now and then dies while booting on a loaded host; that
    # is no fault this module is about.
    for attempt in range(1, attempts + 1):
        try:
            return lab.boot_many([lab_fixtures.unique_name(prefix)
                                  for prefix in prefixes])
        except (libvirt.libvirtError, qga_lab.LabError) as error:
            if attempt == attempts:
                raise
            _report('a guest died while booting (%s); booting again'
                    % error)


class FaultMatrixTest(testtools.TestCase):
    """One lab guest per cell, booted together."""

    CELLS = ('killed', 'hung', 'poweroff', 'libvirtd', 'crash', 'watchdog')

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        lab = lab_fixtures.shared_lab()
        started = time.monotonic()
        guests = _boot_many(lab, ['fault-' + cell for cell in cls.CELLS])
        cls.guests = dict(zip(cls.CELLS, guests))
        _report('booted %d guests in parallel in %.1f s' % (
            len(guests), time.monotonic() - started))

    @classmethod
    def tearDownClass(cls):
        lab = lab_fixtures.shared_lab()
        for guest in cls.guests.values():
            with contextlib.suppress(libvirt.libvirtError):
                lab.destroy(guest)
            # Snapshots and the power-off cell leave persistent domains.
            _undefine(guest.uuid)
        super().tearDownClass()

    def setUp(self):
        super().setUp()
        qga_conf.register_opts(CONF, qs.CONFIG_OPTS)
        self.fixture = self.useFixture(compute.RealDriverFixture(
            ['user_password', 'guest_exec', 'quiesced_snapshot'],
            agent_timeout=AGENT_TIMEOUT, freeze_timeout=FREEZE_TIMEOUT))
        self.driver = self.fixture.driver
        (self.exec_endpoint,) = [
            e for e in self.fixture.endpoints
            if isinstance(e, guest_exec.GuestExecEndpoint)]
        self.context = nova_context.get_admin_context()
        self.logs = self.useFixture(fixtures.FakeLogger(level=logging.DEBUG))

    def cell(self, name):
        guest = self.guests[name]
        return guest, compute.lab_instance(guest, host='lab')

    # -- helpers -----------------------------------------------------------

    def run_exec(self, instance, argv, timeout=30, wait=True):
        return self.exec_endpoint.guest_exec(
            self.context, instance, argv, None, '', timeout, wait)

    def exec_in_thread(self, instance, argv, timeout=30):
        """Start a waited exec in a thread; returns (thread, outcome)."""
        outcome = {}

        def run():
            started = time.monotonic()
            try:
                outcome['result'] = self.run_exec(instance, argv, timeout)
            except Exception as error:
                outcome['error'] = error
            outcome['seconds'] = time.monotonic() - started
        thread = threading.Thread(target=run)
        thread.start()
        self.addCleanup(thread.join)
        return thread, outcome

    def assert_nova_error(self, outcome, cls, tag):
        error = outcome.get('error')
        self.assertIsInstance(error, cls, outcome)
        self.assertEqual(tag, exception.agent_error_tag(error))
        return error

    def assert_thawed(self, guest):
        self.assertEqual('thawed',
                         guest.agent_command('guest-fsfreeze-status'))
        guest.check_shell('echo alive > /data/alive && sync')

    def snapshot(self, instance, image_id):
        self.fixture.images.add(image_id,
                                {qs.QUIESCE_PROPERTY: qs.QUIESCE_REQUIRED})
        self.driver.snapshot(self.context, instance, image_id, mock.Mock())

    # -- qemu-ga killed ----------------------------------------------------

    def test_agent_killed_during_waited_exec(self):
        guest, instance = self.cell('killed')
        thread, outcome = self.exec_in_thread(instance, ['/bin/sleep', '5'])
        time.sleep(0.5)
        killed = time.monotonic()
        # Through the lab's control port, bypassing qemu-ga; the guest's
        # loop starts a new qemu-ga 2 s later.
        guest.control('echo 2 > /run/qga.pause; kill -9 $(pidof qemu-ga)')
        thread.join(30)
        failed_after = time.monotonic() - killed

        error = self.assert_nova_error(
            outcome, nova_exception.InstanceAgentNotEnabled,
            exception.NOT_CONNECTED)
        _report('qemu-ga SIGKILLed during a waited exec: %s after %.2f s: %s'
                % (type(error).__name__, failed_after,
                   error.format_message()))
        self.assertLess(failed_after, AGENT_TIMEOUT + MARGIN)
        pid = error.kwargs['pid']
        self.assertIn('pid %d' % pid, error.format_message())

        recovered = guest.wait_agent(60)
        _report('qemu-ga back %.1f s after the failure' % recovered)
        # The new qemu-ga knows nothing of the old one's processes.
        error = self.assertRaises(
            nova_exception.NotFound, self.exec_endpoint.guest_exec_status,
            self.context, instance, pid)
        self.assertEqual(exception.PID_UNKNOWN,
                         exception.agent_error_tag(error))
        result = self.run_exec(instance, ['/bin/echo', 'recovered'])
        self.assertEqual((True, 0), (result['exited'], result['exitcode']))

    # -- qemu-ga hung (SIGSTOP) --------------------------------------------

    def hung_agent(self, guest):
        guest.pause_agent()
        self.addCleanup(guest.resume_agent)

    def test_hung_agent_at_exec_start(self):
        guest, instance = self.cell('hung')
        guest.check_shell('rm -f /run/late-exec')
        self.hung_agent(guest)
        started = time.monotonic()
        error = self.assertRaises(
            nova_exception.InstanceAgentNotEnabled, self.run_exec, instance,
            ['/bin/touch', '/run/late-exec'])
        elapsed = time.monotonic() - started
        _report('exec with qemu-ga stopped: %s (%s) after %.2f s' % (
            type(error).__name__, exception.agent_error_tag(error), elapsed))
        self.assertEqual(exception.TIMEOUT, exception.agent_error_tag(error))
        self.assertIn('may still take effect', error.format_message())
        # guest-info (the capability check) is the call that times out;
        # libvirt syncs with qemu-ga before a raw command for up to 5 s,
        # whatever the command's own timeout.
        self.assertLess(elapsed, max(AGENT_TIMEOUT, 5) + MARGIN)

        guest.resume_agent()
        # Nothing was started: the check came first.
        self.assertEqual(1, guest.control('test -e /run/late-exec'))
        result = self.run_exec(instance, ['/bin/echo', 'after'])
        self.assertEqual((True, 0), (result['exited'], result['exitcode']))

    def test_hung_agent_during_password_set(self):
        guest, instance = self.cell('hung')
        old_hash = guest.read_shadow_hash('alice')
        self.hung_agent(guest)
        started = time.monotonic()
        error = self.assertRaises(
            nova_exception.InstanceAgentNotEnabled,
            self.driver.set_admin_password, instance, 'Hung-pw-4f1e',
            user_name='alice')
        elapsed = time.monotonic() - started
        _report('password set with qemu-ga stopped: %s (%s) after %.2f s' % (
            type(error).__name__, exception.agent_error_tag(error), elapsed))
        self.assertEqual(exception.TIMEOUT, exception.agent_error_tag(error))
        self.assertGreaterEqual(elapsed, AGENT_TIMEOUT)
        self.assertLess(elapsed, AGENT_TIMEOUT + MARGIN)
        self.assertNotIn('Hung-pw-4f1e', error.format_message())
        self.assertNotIn('Hung-pw-4f1e', self.logs.output)

        guest.resume_agent()
        # qemu-ga runs the command it had queued once it resumes: the hash
        # is the old one or the new one, whole, never anything else.
        new_hash = guest.read_shadow_hash('alice')
        if new_hash != old_hash:
            self.assertTrue(qga_lab.password_matches('Hung-pw-4f1e',
                                                     new_hash))
        _report('after SIGCONT the guest has the %s password' % (
            'old' if new_hash == old_hash else 'new'))
        # And the next request goes through.
        self.driver.set_admin_password(instance, 'After-hang-pw',
                                       user_name='alice')
        self.assertTrue(qga_lab.password_matches(
            'After-hang-pw', guest.read_shadow_hash('alice')))

    def test_hung_agent_at_the_freeze(self):
        guest, instance = self.cell('hung')
        self.addCleanup(_undefine, guest.uuid)
        freeze = qs.FreezeWindow.freeze
        hung_at = []

        def freeze_with_agent_hung(window):
            # Between the start-of-snapshot check and the freeze.
            self.hung_agent(guest)
            hung_at.append(time.monotonic())
            return freeze(window)

        with mock.patch.object(qs.FreezeWindow, 'freeze',
                               freeze_with_agent_hung):
            error = self.assertRaises(
                nova_exception.InstanceQuiesceFailed, self.snapshot,
                instance, 'hung')
        elapsed = time.monotonic() - hung_at[0]
        _report('snapshot with qemu-ga stopped at the freeze: failed %.2f s '
                'after the freeze was sent: %s' % (elapsed,
                                                   error.format_message()))
        self.assertIn('guest-fsfreeze-freeze', error.format_message())
        # The freeze and the thaw after it each wait out the timeout.
        self.assertLess(elapsed, 2 * AGENT_TIMEOUT + MARGIN)
        self.assertFalse(os.path.exists(self.fixture.images.path('hung')))

        guest.resume_agent()
        # The queued freeze ran, then the queued thaw.
        self.assert_thawed(guest)
        self.assertEqual({}, guest.domain.blockJobInfo('vda', 0))

    def test_hung_agent_while_frozen(self):
        guest, instance = self.cell('hung')
        self.addCleanup(_undefine, guest.uuid)

        def hang_while_frozen():
            # qemu-ga refuses guest-exec while frozen: the control port.
            guest.control('kill -STOP $(pidof qemu-ga)')
            self.addCleanup(guest.resume_agent)
        # Stuck past the watchdog's thaw, which waits out the timeout.
        stuck = FREEZE_TIMEOUT + AGENT_TIMEOUT + MARGIN
        with mock.patch.object(libvirt_guest.BlockDevice, 'abort_job',
                               _stuck_while_frozen(stuck, hang_while_frozen)):
            error = self.assertRaises(
                nova_exception.InstanceQuiesceFailed, self.snapshot,
                instance, 'frozen-hung')
        _report('qemu-ga stopped while frozen: %s' % error.format_message())
        self.assertIn('could not thaw', error.format_message())
        self.assertIn('guest-fsfreeze-thaw', error.format_message())
        self.assertFalse(os.path.exists(
            self.fixture.images.path('frozen-hung')))

        resumed = time.monotonic()
        guest.resume_agent()
        # The thaw libvirt had sent runs as soon as qemu-ga resumes.
        self.assert_thawed(guest)
        _report('thawed %.2f s after SIGCONT' % (time.monotonic() - resumed))
        self.assertEqual({}, guest.domain.blockJobInfo('vda', 0))

    # -- guest powered off ---------------------------------------------------

    def test_guest_powered_off_during_exec(self):
        guest, instance = self.cell('poweroff')
        # As nova's domains are: persistent, so it stays, shut off.
        lab_fixtures.shared_lab().connect().defineXML(
            guest.domain.XMLDesc(0))
        self.addCleanup(_undefine, guest.uuid)
        thread, outcome = self.exec_in_thread(instance, ['/bin/sleep', '5'])
        time.sleep(0.5)
        off = time.monotonic()
        guest.domain.destroy()
        thread.join(30)
        failed_after = time.monotonic() - off

        # Which comes first is a race: libvirt's agent channel closing, the
        # domain no longer running, or the poll in flight going unanswered
        # (bounded by agent_timeout all the same, checked below).
        error = outcome.get('error')
        self.assertIsInstance(error, (nova_exception.Invalid,
                                      nova_exception.InstanceAgentNotEnabled),
                              outcome)
        tag = exception.agent_error_tag(error)
        self.assertIn(tag, (exception.COMMAND_FAILED,
                            exception.NOT_CONNECTED, exception.TIMEOUT))
        _report('guest powered off during a waited exec: %s after %.2f s: %s'
                % (type(error).__name__, failed_after,
                   error.format_message()))
        if tag == exception.COMMAND_FAILED:
            self.assertIn('not running', error.format_message())
        self.assertLess(failed_after, AGENT_TIMEOUT + MARGIN)

        for call in (
                lambda: self.run_exec(instance, ['/bin/true']),
                lambda: self.driver.set_admin_password(
                    instance, 'Off-pw-9c2a', user_name='alice')):
            started = time.monotonic()
            error = self.assertRaises(nova_exception.NovaException, call)
            self.assertLess(time.monotonic() - started, 1)
            self.assertIn('not running', error.format_message())
            self.assertNotIn('Off-pw-9c2a', error.format_message())

    # -- libvirtd restarted --------------------------------------------------

    def restart_libvirtd(self, lab):
        """Restart the lab's libvirtd; skip unless only this process would
        notice.

        QEMU keeps running and the new daemon reconnects to it, but any
        other test process's agent call in flight would fail.
        """
        config = os.path.join(lab.workdir, 'libvirtd.conf')
        if (libvirtd.read_pid(lab.pidfile) is None or
                not os.path.exists(config)):
            self.skipTest('libvirtd was not started by the lab')
        ours = {guest.name for guest in self.guests.values()}
        # The lab lock holds off other processes' boots meanwhile.
        with lab._locked():
            # This process's other guests (the shared one) are idle now.
            others = sorted(name for name in set(lab.active_domains()) - ours
                            if not lab_fixtures.booted_here(name))
            if others:
                self.skipTest('other domains run on libvirtd: %s'
                              % ', '.join(others))
            started = time.monotonic()
            libvirtd.stop(lab.pidfile)
            libvirtd.start(lab.pidfile, lab.logfile, config)
        # The old connection does not know yet that it is dead, and the
        # domain objects of every guest of this process (the shared guest
        # too) belong to it. The Lab has no public way to say so.
        lab._close()
        conn = lab.connect()
        for guest in list(lab._guests.values()):
            with contextlib.suppress(libvirt.libvirtError):
                guest.domain = conn.lookupByUUIDString(guest.uuid)
        return time.monotonic() - started

    def test_libvirtd_restarted_during_exec(self):
        guest, instance = self.cell('libvirtd')
        lab = lab_fixtures.shared_lab()
        thread, outcome = self.exec_in_thread(
            instance, ['/bin/sh', '-c', 'sleep 3; echo survived'])
        time.sleep(0.5)
        restart_seconds = self.restart_libvirtd(lab)
        thread.join(60)

        error = outcome.get('error')
        self.assertIsInstance(error, nova_exception.NovaException, outcome)
        _report('libvirtd restarted (%.1f s) during a waited exec: %s (%s) '
                'after %.2f s: %s' % (
                    restart_seconds, type(error).__name__,
                    exception.agent_error_tag(error), outcome['seconds'],
                    error.format_message()))
        pid = error.kwargs['pid']
        # The domain survived, and so did the command in the guest.
        self.assertTrue(guest.domain.isActive())
        deadline = time.monotonic() + 30
        while True:
            result = self.exec_endpoint.guest_exec_status(
                self.context, instance, pid)
            if result['exited'] or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        self.assertEqual((True, 0), (result['exited'], result['exitcode']))
        result = self.run_exec(instance, ['/bin/echo', 'after'])
        self.assertEqual((True, 0), (result['exited'], result['exitcode']))
        self.assert_thawed(guest)

    # -- nova-compute killed during a freeze ----------------------------------

    def test_compute_killed_while_frozen_thawed_at_start_up(self):
        guest, instance = self.cell('crash')
        self.addCleanup(_undefine, guest.uuid)
        _mark_as_nova_instance(guest)
        child = subprocess.Popen(
            [sys.executable, '-c',
             'import sys; from tests.functional import test_fault_matrix '
             'as m; m.frozen_compute_main(sys.argv[1])', guest.uuid],
            cwd=_REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True)
        self.addCleanup(child.wait)
        self.addCleanup(self._kill, child)
        line = child.stdout.readline()
        self.assertEqual('frozen\n', line)
        frozen = time.monotonic()
        self.assertEqual('frozen',
                         guest.agent_command('guest-fsfreeze-status'))
        self._kill(child)
        child.wait()
        # Nothing else thaws the guest until nova-compute starts again.
        self.assertEqual('frozen',
                         guest.agent_command('guest-fsfreeze-status'))

        logs = self.useFixture(fixtures.FakeLogger(level=logging.WARNING))
        started = time.monotonic()
        self.driver.init_host('lab')
        thawed = time.monotonic()
        self.assert_thawed(guest)
        self.assertIn('Thawed 1 filesystems of instance %s, found frozen at '
                      'start-up' % guest.uuid, logs.output)
        _report('nova-compute SIGKILLed while frozen: init_host thawed the '
                'guest in %.2f s (frozen %.1f s in all, since the kill)' % (
                    thawed - started, thawed - frozen))

    @staticmethod
    def _kill(child):
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signal.SIGKILL)

    # -- auto-thaw -----------------------------------------------------------

    def test_watchdog_bounds_the_freeze_of_a_stuck_snapshot(self):
        guest, instance = self.cell('watchdog')
        self.addCleanup(_undefine, guest.uuid)
        calls = {}

        def timed(name, method):
            def call(domain, *args, **kwargs):
                sent = time.monotonic()
                try:
                    return method(domain, *args, **kwargs)
                finally:
                    calls.setdefault(name, (sent, time.monotonic()))
            return call

        observed = {}

        def watch():
            # The guest's own view, by the raw path, while the worker is
            # stuck with the guest frozen.
            observed['stuck'] = time.monotonic()
            while time.monotonic() - observed['stuck'] < 5:
                if guest.agent_command('guest-fsfreeze-status') == 'thawed':
                    observed['thawed'] = time.monotonic()
                    return
                time.sleep(0.02)

        with mock.patch.object(libvirt.virDomain, 'fsFreeze',
                               timed('freeze', libvirt.virDomain.fsFreeze)), \
                mock.patch.object(libvirt.virDomain, 'fsThaw',
                                  timed('thaw', libvirt.virDomain.fsThaw)), \
                mock.patch.object(libvirt_guest.BlockDevice, 'abort_job',
                                  _stuck_while_frozen(0, watch)):
            error = self.assertRaises(
                nova_exception.InstanceQuiesceFailed, self.snapshot,
                instance, 'stuck')

        self.assertIn('freeze_timeout', error.format_message())
        freeze_sent, frozen = calls['freeze']
        _thaw_sent, thawed = calls['thaw']
        window = thawed - freeze_sent
        _report('watchdog: freeze_timeout %.1f s, frozen at most %.3f s '
                '(freeze sent to thaw returned; the guest saw itself thawed '
                '%.3f s after the freeze returned)' % (
                    FREEZE_TIMEOUT, window, observed['thawed'] - frozen))
        self.assertGreaterEqual(window, FREEZE_TIMEOUT)
        self.assertLess(window, FREEZE_TIMEOUT + MARGIN)
        self.assertLess(observed['thawed'] - frozen, FREEZE_TIMEOUT + MARGIN)
        self.assertFalse(os.path.exists(self.fixture.images.path('stuck')))
        self.assert_thawed(guest)
        self.assertEqual({}, guest.domain.blockJobInfo('vda', 0))
