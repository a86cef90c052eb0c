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

"""nova_qga_ext.agent against a real libvirtd, qemu-ga and guest.

Every effect is checked inside the guest through the lab's raw agent path
(LabGuest.shell / agent_command), not through the client under test.
Timings are printed (visible with ``python -m testtools.run``).
"""

import statistics
import sys
import time

import libvirt
import libvirt_qemu
from nova import monkey_patch
from nova import utils
import testtools

from nova_qga_ext import agent
from nova_qga_ext.lab import guest as lab_guest
from tests.functional import lab as lab_fixtures


def _report(what, seconds):
    print('%s: %.1f ms' % (what, seconds * 1000), file=sys.stderr)


def _median_time(func, runs):
    times = []
    for _ in range(runs):
        start = time.monotonic()
        func()
        times.append(time.monotonic() - start)
    return statistics.median(times)


class SharedGuestAgentTest(testtools.TestCase):
    """Calls that leave the shared guest as they found it."""

    def setUp(self):
        super().setUp()
        self.guest = lab_fixtures.shared_guest()
        self.agent = agent.GuestAgent(self.guest.domain, timeout=10,
                                      results=agent.ExpiringCache())

    def test_ping_and_info(self):
        self.agent.ping()
        _report('ping median of 50', _median_time(self.agent.ping, 50))
        info = self.agent.info()
        self.assertEqual(self.guest.agent_command('guest-info')['version'],
                         info.version)
        for command in ('guest-exec', 'guest-exec-status', 'guest-ping',
                        'guest-set-user-password', 'guest-fsfreeze-freeze'):
            self.assertTrue(info.is_enabled(command), command)
        # qemu-ga on Linux reports the Windows-only command as disabled.
        self.assertFalse(info.is_enabled('guest-get-devices'))
        self.assertEqual(info.commands, self.agent.require(
            'guest-exec', 'guest-exec-status').commands)

    def test_read_only_queries(self):
        mounts = {fs['mountpoint']: fs for fs in self.agent.fs_info()}
        self.assertEqual('ext4', mounts['/data']['type'])
        release = self.guest.check_shell('uname -r').decode().strip()
        self.assertEqual(release, self.agent.os_info()['kernel-release'])
        self.assertIsInstance(self.agent.users(), list)

    def test_exec_output_and_exit_code(self):
        result = self.agent.exec_run(
            ['/bin/sh', '-c', 'echo out; echo err >&2; exit 3'])
        self.assertEqual((True, 3, None, b'out\n', b'err\n', False, False),
                         (result.exited, result.exitcode, result.signal,
                          result.stdout, result.stderr,
                          result.stdout_truncated, result.stderr_truncated))
        killed = self.agent.exec_run(['/bin/sh', '-c', 'kill -9 $$'])
        self.assertEqual((None, 9), (killed.exitcode, killed.signal))

    def test_exec_stdin_and_env(self):
        data = bytes(range(256)) * 4
        result = self.agent.exec_run(['/bin/cat'], stdin=data)
        self.assertEqual(data, result.stdout)
        result = self.agent.exec_run(
            ['sh', '-c', 'echo "$GREETING:$PATH"'],
            env=['GREETING=hello world', 'PATH=/sbin:/bin'])
        # env replaces the environment, and PATH lookup uses it.
        self.assertEqual(b'hello world:/sbin:/bin\n', result.stdout)

    def test_exec_large_output_is_truncated_and_flagged(self):
        small = agent.GuestAgent(self.guest.domain, max_output_bytes=1000,
                                 results=agent.ExpiringCache())
        result = small.exec_run(
            ['/bin/sh', '-c', 'head -c 5000 /dev/zero; echo short >&2'])
        self.assertEqual(b'\0' * 1000, result.stdout)
        self.assertTrue(result.stdout_truncated)
        self.assertEqual((b'short\n', False),
                         (result.stderr, result.stderr_truncated))

    def test_exec_output_beyond_libvirt_message_limit(self):
        ex = self.assertRaises(
            agent.AgentCommandFailed, self.agent.exec_run,
            ['/bin/sh', '-c', 'head -c 3500000 /dev/zero'])
        self.assertIn('4 MiB', str(ex))
        # The agent connection survives this one.
        self.agent.ping()

    def test_exec_status_is_kept_and_unknown_pid(self):
        pid = self.agent.exec_start(['/bin/echo', 'once'])
        first = self.agent.exec_status(pid)
        while not first.exited:
            first = self.agent.exec_status(pid)
        self.assertEqual(b'once\n', first.stdout)
        # qemu-ga has dropped the record; the client still answers.
        self.assertEqual(first, self.agent.exec_status(pid))
        fresh = agent.GuestAgent(self.guest.domain,
                                 results=agent.ExpiringCache())
        ex = self.assertRaises(agent.ExecPidUnknown, fresh.exec_status, pid)
        self.assertEqual(pid, ex.kwargs['pid'])
        self.assertRaises(agent.ExecPidUnknown, self.agent.exec_status,
                          2 ** 31 - 1)

    def test_exec_run_timing_and_deadline(self):
        self.agent.exec_run(['/bin/true'])
        true_rtt = _median_time(
            lambda: self.agent.exec_run(['/bin/true']), 20)
        _report('exec_run /bin/true median of 20', true_rtt)
        sleep_run = _median_time(
            lambda: self.agent.exec_run(['/bin/sleep', '0.1']), 10)
        overshoot = sleep_run - 0.1 - true_rtt
        _report('exec_run sleep 0.1 overshoot (beyond 100 ms + /bin/true '
                'round trip), median of 10', overshoot)
        # Generous so that a loaded CI machine does not fail it.
        self.assertLess(overshoot, 0.1)

        start = time.monotonic()
        result = self.agent.exec_run(['/bin/sleep', '2'], timeout=0.3)
        waited = time.monotonic() - start
        self.assertFalse(result.exited)
        self.assertLess(waited, 1.5)
        self.assertTrue(self.agent.exec_run(['/bin/true'], timeout=1).exited)
        later = self.agent.exec_run(['/bin/true'])
        self.assertTrue(later.exited)
        done = self.agent.exec_status(result.pid)
        while not done.exited:
            time.sleep(0.1)
            done = self.agent.exec_status(result.pid)
        self.assertEqual(0, done.exitcode)

    def test_freeze_status_and_thaw(self):
        self.addCleanup(self.guest.agent_command, 'guest-fsfreeze-thaw')
        self.assertEqual('thawed', self.agent.fs_freeze_status())
        self.assertEqual(1, self.agent.fs_freeze())
        self.assertEqual('frozen',
                         self.guest.agent_command('guest-fsfreeze-status'))
        self.assertEqual('frozen', self.agent.fs_freeze_status())
        ex = self.assertRaises(agent.AgentCommandDisabled,
                               self.agent.exec_start, ['/bin/true'])
        self.assertIn('thaw them', str(ex))
        self.assertEqual(1, self.agent.fs_thaw())
        self.assertEqual('thawed',
                         self.guest.agent_command('guest-fsfreeze-status'))
        self.guest.check_shell('echo written > /data/after-thaw && sync')

        self.assertEqual(1, self.agent.fs_freeze(['/data']))
        self.assertEqual('frozen', self.agent.fs_freeze_status())
        self.assertEqual(1, self.agent.fs_thaw())

        def cycle():
            self.agent.fs_freeze()
            self.agent.fs_thaw()
        _report('fs_freeze + fs_thaw median of 20', _median_time(cycle, 20))
        self.assertEqual('thawed', self.agent.fs_freeze_status())

    def test_set_user_password_plain_and_crypted(self):
        original = self.guest.read_shadow_hash('alice')
        self.addCleanup(self.guest.check_shell,
                        "echo 'alice:%s' | chpasswd -e" % original)
        start = time.monotonic()
        self.agent.set_user_password('alice', 'N3w secret!')
        _report('set_user_password (yescrypt under TCG)',
                time.monotonic() - start)
        changed = self.guest.read_shadow_hash('alice')
        self.assertNotEqual(original, changed)
        self.assertTrue(lab_guest.password_matches('N3w secret!', changed))
        self.assertFalse(lab_guest.password_matches('old', changed))

        self.agent.set_user_password('alice', original, crypted=True)
        self.assertEqual(original, self.guest.read_shadow_hash('alice'))
        self.assertTrue(lab_guest.password_matches('old', original))

        ex = self.assertRaises(agent.AgentCommandFailed,
                               self.agent.set_user_password, 'nobody-here',
                               'N3w secret!')
        self.assertEqual('guest-set-user-password', ex.kwargs['command'])
        self.assertNotIn('N3w secret!', str(ex))

    def test_through_nova_tpool_wrapping(self):
        # What the driver hands over: in eventlet mode both are tpool
        # proxies, in threading mode the plain objects.
        domain = utils.tpool_wrap(self.guest.domain,
                                  autowrap=(libvirt.virDomain,))
        qemu = utils.tpool_wrap(libvirt_qemu)
        if monkey_patch.is_patched():
            self.assertIsNot(qemu, libvirt_qemu)
        client = agent.GuestAgent(domain, qemu=qemu,
                                  results=agent.ExpiringCache())
        client.ping()
        self.assertEqual(b'ok\n', client.exec_run(['/bin/echo', 'ok']).stdout)
        self.assertEqual('thawed', client.fs_freeze_status())
        client.fs_thaw()

    def test_hung_agent_times_out(self):
        self.guest.pause_agent()
        self.addCleanup(self.guest.resume_agent)
        client = agent.GuestAgent(self.guest.domain, timeout=2)
        # The dedicated API honours the timeout; a raw command first waits
        # up to 5 s for libvirt's guest-sync.
        for call, bound in ((client.fs_thaw, 2), (client.ping, 5)):
            start = time.monotonic()
            ex = self.assertRaises(agent.AgentTimeout, call)
            took = time.monotonic() - start
            _report('%s against a SIGSTOPped qemu-ga' % call.__name__, took)
            self.assertLess(took, bound + 3)
            self.assertIn('within %s' % ex.kwargs['timeout'], str(ex))
            self.assertGreaterEqual(ex.kwargs['timeout'], 2)

    def test_stopped_agent_is_not_connected(self):
        self.guest.stop_agent(5)
        self.addCleanup(self.guest.wait_agent)
        client = agent.GuestAgent(self.guest.domain, timeout=10)
        for call in (client.ping, client.fs_thaw):
            start = time.monotonic()
            ex = self.assertRaises(agent.AgentNotConnected, call)
            self.assertLess(time.monotonic() - start, 1)
            self.assertIn('is qemu-ga installed and running', str(ex))


class FaultGuestsTest(testtools.TestCase):
    """Guests broken on purpose, at boot or by the test itself."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        lab = lab_fixtures.shared_lab()
        cls.guests = dict(zip(
            ('no_agent', 'blocked', 'oversize'), lab.boot_many([
                dict(name=lab_fixtures.unique_name('noagent'), agent=False),
                dict(name=lab_fixtures.unique_name('blocked'),
                     block_rpcs=('guest-exec', 'guest-get-time')),
                dict(name=lab_fixtures.unique_name('oversize'))])))

    @classmethod
    def tearDownClass(cls):
        for guest in cls.guests.values():
            lab_fixtures.shared_lab().destroy(guest)
        super().tearDownClass()

    def test_no_agent_channel(self):
        client = agent.GuestAgent(self.guests['no_agent'].domain)
        for call in (client.ping, client.info, client.fs_freeze_status):
            ex = self.assertRaises(agent.AgentNotConfigured, call)
            self.assertIn('hw_qemu_guest_agent=yes', str(ex))
        self.assertRaises(agent.AgentNotConfigured,
                          client.set_user_password, 'alice', 'x')
        self.assertRaises(agent.AgentNotConfigured, client.fs_freeze)

    def test_command_blocked_in_guest(self):
        client = agent.GuestAgent(self.guests['blocked'].domain)
        info = client.require('guest-ping', 'guest-exec-status')
        self.assertFalse(info.is_enabled('guest-exec'))
        ex = self.assertRaises(agent.AgentCommandDisabled, client.require,
                               'guest-ping', 'guest-exec')
        self.assertEqual('guest-exec', ex.kwargs['command'])
        ex = self.assertRaises(agent.AgentCommandDisabled, client.exec_run,
                               ['/bin/true'])
        self.assertEqual('guest-exec', ex.kwargs['command'])
        self.assertIn('--block-rpcs', str(ex))
        self.assertRaises(agent.AgentCommandDisabled, client._call,
                          'guest-get-time')
        # Other commands keep working.
        self.assertEqual('thawed', client.fs_freeze_status())

    def test_reply_over_libvirt_agent_limit_drops_the_agent(self):
        guest = self.guests['oversize']
        client = agent.GuestAgent(guest.domain)
        ex = self.assertRaises(
            agent.AgentCommandFailed, client.exec_run,
            ['/bin/sh', '-c', 'head -c 9000000 /dev/zero'])
        self.assertIn('restart qemu-ga', str(ex))
        self.assertRaises(agent.AgentNotConnected, client.ping)
        # qemu-ga is stuck writing the rest of the reply: only SIGKILL
        # gets it restarted (the lab's /init loop restarts it).
        guest.control('kill -9 $(pidof qemu-ga)')
        guest.wait_agent(60)
        client.ping()
