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

"""guest_exec's compute side on a real guest with the real qemu-ga.

The RPC endpoint that ``qga_ext.LibvirtDriver`` registers is called as
nova-compute's RPC server would call it, with a real nova ``Instance``
whose domain is a lab guest on qemu:///system. Results are checked against
the guest through the lab's own raw agent path where it matters.
"""

import base64
import logging
import sys
import threading
import time

import fixtures
from nova import context as nova_context
from nova import exception as nova_exception
from nova import objects
from oslo_config import cfg
from oslo_config import fixture as config_fixture
import testtools

from nova_qga_ext import exception
from nova_qga_ext.extensions import guest_exec
from nova_qga_ext.lab import compute as lab_compute
from tests.functional import lab as lab_fixtures

CONF = cfg.CONF

ENV_SECRET = 'ENV-SECRET-3c9d1f'
INPUT_SECRET = b'STDIN-SECRET-77aa02'


def _report(line):
    print(line, file=sys.stderr)


def b64(data):
    return base64.b64encode(data).decode()


def unb64(text):
    return base64.b64decode(text)


class GuestExecComputeTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        compute = self.useFixture(lab_compute.RealDriverFixture(
            ['guest_exec']))
        self.driver = compute.driver
        self.events = compute.events
        (self.endpoint,) = [e for e in compute.endpoints
                            if isinstance(e, guest_exec.GuestExecEndpoint)]
        self.context = nova_context.get_admin_context()

    def instance_of(self, guest):
        return objects.Instance(uuid=guest.uuid, id=1, project_id='project',
                                user_id='user', host=lab_compute.HOST)

    def shared(self):
        guest = lab_fixtures.shared_guest()
        return guest, self.instance_of(guest)

    def run_exec(self, instance, command, env=None, stdin=b'', timeout=30,
                 wait=True):
        return self.endpoint.guest_exec(
            self.context, instance, command, env, b64(stdin), timeout, wait)

    def wait_exited(self, instance, pid, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            result = self.endpoint.guest_exec_status(self.context, instance,
                                                     pid)
            if result['exited'] or time.monotonic() > deadline:
                return result
            time.sleep(0.05)


class TestResults(GuestExecComputeTest):

    def test_uname(self):
        guest, instance = self.shared()
        started = time.monotonic()
        result = self.run_exec(instance, ['/bin/uname', '-a'])
        elapsed = time.monotonic() - started
        _report('guest exec uname -a: %.1f ms' % (elapsed * 1000))
        self.assertTrue(result['exited'])
        self.assertEqual((0, None), (result['exitcode'], result['signal']))
        stdout = unb64(result['stdout']).decode()
        self.assertTrue(stdout.startswith('Linux qgalab '), stdout)
        # The same answer through the lab's independent raw path.
        self.assertEqual(stdout.encode(), guest.check_shell('uname -a'))
        self.assertEqual(('', False, False), (
            result['stderr'], result['stdout_truncated'],
            result['stderr_truncated']))
        self.events.assert_called_once_with(
            self.context, guest_exec.EVENT, lab_compute.HOST, instance.uuid)

    def test_stdout_stderr_and_exit_code(self):
        _guest, instance = self.shared()
        result = self.run_exec(
            instance, ['/bin/sh', '-c', 'echo out; echo err >&2; exit 3'])
        self.assertEqual(
            (True, 3, None, b'out\n', b'err\n'),
            (result['exited'], result['exitcode'], result['signal'],
             unb64(result['stdout']), unb64(result['stderr'])))

    def test_stdin_is_passed(self):
        _guest, instance = self.shared()
        data = bytes(range(256)) * 64
        result = self.run_exec(instance, ['/bin/cat'], stdin=data)
        self.assertEqual(0, result['exitcode'])
        self.assertEqual(data, unb64(result['stdout']))

    def test_env_is_passed_and_replaces_the_environment(self):
        _guest, instance = self.shared()
        result = self.run_exec(
            instance, ['/bin/sh', '-c', 'echo "$GREETING|$HOME"'],
            env=['GREETING=hello world', 'PATH=/bin'])
        self.assertEqual(b'hello world|\n', unb64(result['stdout']))

    def test_output_capped_and_flagged(self):
        self.useFixture(config_fixture.Config(CONF)).config(
            max_output_bytes=1000, group='qga_ext')
        _guest, instance = self.shared()
        result = self.run_exec(instance, [
            '/bin/sh', '-c', 'head -c 5000 /dev/zero; echo short >&2'])
        self.assertEqual((1000, True), (len(unb64(result['stdout'])),
                                        result['stdout_truncated']))
        self.assertEqual((b'short\n', False), (unb64(result['stderr']),
                                               result['stderr_truncated']))

    def test_missing_program(self):
        _guest, instance = self.shared()
        error = self.assertRaises(
            nova_exception.Invalid, self.run_exec, instance,
            ['/no/such/program'])
        self.assertEqual(exception.COMMAND_FAILED,
                         exception.agent_error_tag(error))
        self.assertIn('/no/such/program', error.format_message())

    def test_secrets_not_logged_at_debug(self):
        logs = self.useFixture(fixtures.FakeLogger(level=logging.DEBUG))
        _guest, instance = self.shared()
        result = self.run_exec(
            instance, ['/bin/sh', '-c', 'cat >/dev/null; echo ok'],
            env=['TOKEN=' + ENV_SECRET], stdin=INPUT_SECRET)
        self.assertEqual(b'ok\n', unb64(result['stdout']))
        self.assertIn('guest-exec', logs.output)
        for secret in (ENV_SECRET, INPUT_SECRET.decode(), b64(INPUT_SECRET)):
            self.assertNotIn(secret, logs.output)


class TestNoWaitAndDeadline(GuestExecComputeTest):

    def test_no_wait_then_status(self):
        _guest, instance = self.shared()
        started = self.run_exec(
            instance, ['/bin/sh', '-c', 'sleep 1; echo done'], wait=False)
        self.assertEqual(['pid'], list(started))
        running = self.endpoint.guest_exec_status(self.context, instance,
                                                  started['pid'])
        self.assertFalse(running['exited'])
        result = self.wait_exited(instance, started['pid'])
        self.assertEqual((True, 0, b'done\n'), (
            result['exited'], result['exitcode'], unb64(result['stdout'])))
        # qemu-ga forgot it; the compute node kept it.
        self.assertEqual(result, self.endpoint.guest_exec_status(
            self.context, instance, started['pid']))

    def test_still_running_at_the_deadline(self):
        guest, instance = self.shared()
        started = time.monotonic()
        result = self.run_exec(instance, ['/bin/sleep', '30'], timeout=1)
        elapsed = time.monotonic() - started
        _report('guest exec returned at the 1 s deadline after %.2f s'
                % elapsed)
        self.assertLess(elapsed, 3)
        self.assertFalse(result['exited'])
        self.assertIsNone(result['exitcode'])
        # Still running in the guest, under that pid.
        guest.check_shell('kill -TERM %d' % result['pid'])
        result = self.wait_exited(instance, result['pid'])
        self.assertEqual((True, None, 15), (
            result['exited'], result['exitcode'], result['signal']))

    def test_unknown_pid(self):
        _guest, instance = self.shared()
        error = self.assertRaises(
            nova_exception.NotFound, self.endpoint.guest_exec_status,
            self.context, instance, 999999)
        self.assertEqual(exception.PID_UNKNOWN,
                         exception.agent_error_tag(error))


class TestAgentLostMidRun(GuestExecComputeTest):

    def test_poll_timeout_names_the_pid(self):
        self.useFixture(config_fixture.Config(CONF)).config(
            agent_timeout=2, group='qga_ext')
        guest = self.useFixture(lab_fixtures.LabGuestFixture('gexec')).guest
        instance = self.instance_of(guest)
        outcome = {}

        def run():
            try:
                self.run_exec(instance,
                              ['/bin/sh', '-c', 'sleep 2; echo done'])
            except nova_exception.NovaException as error:
                outcome['error'] = error
        thread = threading.Thread(target=run)
        thread.start()
        self.addCleanup(thread.join)
        time.sleep(0.5)
        guest.pause_agent()
        thread.join(60)
        guest.resume_agent()
        error = outcome['error']
        _report('guest exec with qemu-ga stopped mid-run: %s'
                % error.format_message())
        self.assertEqual(exception.TIMEOUT, exception.agent_error_tag(error))
        pid = error.kwargs['pid']
        self.assertIn('pid %d' % pid, error.format_message())
        result = self.wait_exited(instance, pid)
        self.assertEqual((True, 0, b'done\n'), (
            result['exited'], result['exitcode'], unb64(result['stdout'])))


class TestLocking(GuestExecComputeTest):

    def test_other_agent_work_runs_between_polls(self):
        _guest, instance = self.shared()
        done = threading.Event()
        thread = threading.Thread(target=lambda: (self.run_exec(
            instance, ['/bin/sleep', '3']), done.set()))
        thread.start()
        self.addCleanup(thread.join)
        time.sleep(0.5)
        started = time.monotonic()
        with self.driver.instance_lock(instance):
            self.driver.guest_agent(instance).ping()
        waited = time.monotonic() - started
        _report('ping during a waited 3 s exec: %.1f ms' % (waited * 1000))
        self.assertFalse(done.is_set())
        self.assertLess(waited, 1.5)
        thread.join()
        self.assertTrue(done.is_set())

    def test_exec_waits_for_the_instance_lock(self):
        _guest, instance = self.shared()
        holding = threading.Event()

        def hold():
            with self.driver.instance_lock(instance):
                holding.set()
                time.sleep(1.5)
        thread = threading.Thread(target=hold)
        thread.start()
        self.addCleanup(thread.join)
        holding.wait()
        started = time.monotonic()
        result = self.run_exec(instance, ['/bin/true'])
        self.assertEqual(0, result['exitcode'])
        self.assertGreater(time.monotonic() - started, 1.0)


class TestDisabledInGuest(GuestExecComputeTest):

    def test_status_disabled_refused_before_anything_runs(self):
        guest = self.useFixture(lab_fixtures.LabGuestFixture(
            'gexec', block_rpcs=('guest-exec-status',))).guest
        instance = self.instance_of(guest)
        error = self.assertRaises(
            nova_exception.InstanceAgentNotEnabled, self.run_exec, instance,
            ['/bin/touch', '/run/ran'])
        self.assertEqual(exception.COMMAND_DISABLED,
                         exception.agent_error_tag(error))
        self.assertIn('guest-exec-status', error.format_message())
        error = self.assertRaises(
            nova_exception.InstanceAgentNotEnabled,
            self.endpoint.guest_exec_status, self.context, instance, 1)
        self.assertIn('guest-exec-status', error.format_message())
        # Nothing ran: checked through the lab's control port, which
        # bypasses qemu-ga.
        self.assertEqual(1, guest.control('test -e /run/ran'))
        self.assertEqual(0, guest.control('touch /run/ran; test -e /run/ran'))

    def test_exec_disabled(self):
        guest = self.useFixture(lab_fixtures.LabGuestFixture(
            'gexec', block_rpcs=('guest-exec',))).guest
        error = self.assertRaises(
            nova_exception.InstanceAgentNotEnabled, self.run_exec,
            self.instance_of(guest), ['/bin/true'], wait=False)
        self.assertEqual(exception.COMMAND_DISABLED,
                         exception.agent_error_tag(error))
        self.assertIn('guest-exec ', error.format_message() + ' ')
