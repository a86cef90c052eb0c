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

import base64
import json
import logging
import threading
import time
import types
from unittest import mock

import fixtures
import testtools

from nova_qga_ext import agent

NOT_CONNECTED = ('Guest agent is not responding: QEMU guest agent is not '
                 'connected')
NOT_AVAILABLE = ('Guest agent is not responding: Guest agent not available '
                 'for now')
REFUSED = "internal error: unable to execute QEMU agent command '%s': %s"


class FakeLibvirtError(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message

    def get_error_code(self):
        return self.code

    def get_error_message(self):
        return self.message


class UnreadableLibvirtError(FakeLibvirtError):
    def get_error_message(self):
        raise UnicodeDecodeError('utf-8', b'\xd6\xb4', 0, 1, 'invalid')


class FakeTime:
    """monotonic()/sleep() pair where sleeping advances the clock."""

    def __init__(self):
        self.now = 1000.0
        self.sleeps = []

    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def reply(value):
    return json.dumps({'return': value})


def b64(data):
    return base64.b64encode(data).decode('ascii')


class AgentTestCase(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.useFixture(fixtures.MonkeyPatch(
            'nova_qga_ext.agent.libvirt',
            types.SimpleNamespace(libvirtError=FakeLibvirtError)))
        self.clock = FakeTime()
        self.useFixture(fixtures.MonkeyPatch('nova_qga_ext.agent.time',
                                             self.clock))
        self.log = self.useFixture(fixtures.FakeLogger(level=logging.DEBUG))
        self.domain = mock.Mock()
        self.domain.UUIDString.return_value = 'uuid-1'
        self.qemu = mock.Mock()
        self.results = agent.ExpiringCache(max_entries=4, ttl=60.0)
        self.agent_info = agent.ExpiringCache(ttl=60.0)
        self.agent = agent.GuestAgent(self.domain, timeout=5.0,
                                      qemu=self.qemu, results=self.results,
                                      agent_info=self.agent_info,
                                      max_output_bytes=8)

    def requests(self):
        return [json.loads(c.args[1])
                for c in self.qemu.qemuAgentCommand.call_args_list]

    def raising(self, code, message, after=0.0):
        def fail(*args):
            self.clock.now += after
            raise FakeLibvirtError(code, message)
        self.qemu.qemuAgentCommand.side_effect = fail


class TestRawCalls(AgentTestCase):

    def test_ping_passes_json_and_whole_second_timeout(self):
        self.qemu.qemuAgentCommand.return_value = reply({})
        agent.GuestAgent(self.domain, timeout=2.5, qemu=self.qemu).ping()
        self.qemu.qemuAgentCommand.assert_called_once_with(
            self.domain, '{"execute": "guest-ping"}', 3, 0)

    def test_tiny_timeout_never_becomes_nowait_or_block(self):
        self.qemu.qemuAgentCommand.return_value = reply({})
        self.agent._call('guest-ping', timeout=0.01)
        self.assertEqual(1, self.qemu.qemuAgentCommand.call_args.args[2])

    def test_info_and_require(self):
        self.qemu.qemuAgentCommand.return_value = reply({
            'version': '7.2.22',
            'supported_commands': [
                {'name': 'guest-exec', 'enabled': True},
                {'name': 'guest-exec-status', 'enabled': False}]})
        info = self.agent.info()
        self.assertEqual('7.2.22', info.version)
        self.assertTrue(info.is_enabled('guest-exec'))
        self.assertFalse(info.is_enabled('guest-exec-status'))
        self.assertFalse(info.is_enabled('guest-nope'))
        self.assertEqual(info, self.agent.require('guest-exec'))

        ex = self.assertRaises(agent.AgentCommandDisabled, self.agent.require,
                               'guest-exec', 'guest-exec-status')
        self.assertEqual('guest-exec-status', ex.kwargs['command'])
        self.assertIn('has been disabled in the guest', str(ex))
        self.assertIn('--block-rpcs', ex.format_message())

        ex = self.assertRaises(agent.AgentCommandDisabled, self.agent.require,
                               'guest-get-users')
        self.assertIn('not supported by the guest\'s qemu-ga 7.2.22', str(ex))
        self.assertIn('upgrade qemu-ga', str(ex))

    def info_reply(self, **enabled):
        return reply({'version': '7.2.22', 'supported_commands': [
            {'name': name.replace('_', '-'), 'enabled': state}
            for name, state in enabled.items()]})

    def test_require_reuses_an_info_showing_the_commands_enabled(self):
        self.qemu.qemuAgentCommand.return_value = self.info_reply(
            guest_exec=True, guest_exec_status=True)
        first = self.agent.require('guest-exec', 'guest-exec-status')
        again = agent.GuestAgent(self.domain, qemu=self.qemu,
                                 agent_info=self.agent_info)
        self.assertIs(first, again.require('guest-exec-status'))
        self.assertEqual(1, self.qemu.qemuAgentCommand.call_count)

        self.clock.now += 60.0
        again.require('guest-exec')
        self.assertEqual(2, self.qemu.qemuAgentCommand.call_count)

    def test_require_asks_again_after_a_refusal(self):
        self.qemu.qemuAgentCommand.return_value = self.info_reply(
            guest_exec=True, guest_exec_status=False)
        self.assertRaises(agent.AgentCommandDisabled, self.agent.require,
                          'guest-exec', 'guest-exec-status')
        self.qemu.qemuAgentCommand.return_value = self.info_reply(
            guest_exec=True, guest_exec_status=True)
        self.agent.require('guest-exec', 'guest-exec-status')
        self.assertEqual(2, self.qemu.qemuAgentCommand.call_count)

    def test_errors_hinting_at_an_agent_restart_drop_the_kept_info(self):
        for code, message in (
                (86, NOT_CONNECTED),
                (1, REFUSED % ('guest-exec', 'Command guest-exec has been '
                               'disabled'))):
            self.qemu.qemuAgentCommand.side_effect = None
            self.qemu.qemuAgentCommand.return_value = self.info_reply(
                guest_exec=True)
            self.agent.require('guest-exec')
            self.raising(code, message)
            self.assertRaises(agent.AgentError, self.agent.exec_start,
                              ['/bin/true'])
            self.assertIsNone(self.agent_info.get('uuid-1'))

    def test_other_errors_keep_the_info(self):
        self.qemu.qemuAgentCommand.return_value = self.info_reply(
            guest_exec=True)
        self.agent.require('guest-exec')
        self.raising(1, REFUSED % ('guest-exec', 'Failed to execute child '
                                   "process '/nope'"))
        self.assertRaises(agent.AgentCommandFailed, self.agent.exec_start,
                          ['/nope'])
        self.assertIsNotNone(self.agent_info.get('uuid-1'))

    def test_read_only_queries_return_agent_structures(self):
        fs = [{'name': 'vda', 'mountpoint': '/data', 'type': 'ext4'}]
        self.qemu.qemuAgentCommand.side_effect = [
            reply(fs), reply({'id': 'debian'}), reply([{'user': 'alice'}]),
            reply('thawed')]
        self.assertEqual(fs, self.agent.fs_info())
        self.assertEqual({'id': 'debian'}, self.agent.os_info())
        self.assertEqual([{'user': 'alice'}], self.agent.users())
        self.assertEqual('thawed', self.agent.fs_freeze_status())
        self.assertEqual(
            ['guest-get-fsinfo', 'guest-get-osinfo', 'guest-get-users',
             'guest-fsfreeze-status'],
            [r['execute'] for r in self.requests()])

    def test_reply_bytes_not_utf8_are_decoded_defensively(self):
        self.qemu.qemuAgentCommand.return_value = (
            b'{"return": {"pretty-name": "\xff\xfe"}}')
        self.assertEqual({'pretty-name': '\ufffd\ufffd'}, self.agent.os_info())

    def test_malformed_reply(self):
        for bad in ('not json', '{"error": {}}', None):
            self.qemu.qemuAgentCommand.return_value = bad
            ex = self.assertRaises(agent.AgentCommandFailed, self.agent.ping)
            self.assertIn('not a guest agent result', str(ex))


class TestDedicatedApis(AgentTestCase):

    def test_set_user_password_plain_and_crypted(self):
        self.agent.set_user_password('alice', 'pw')
        self.agent.set_user_password('alice', '$6$salt$hash', crypted=True)
        self.assertEqual(
            [mock.call.agentSetResponseTimeout(5, 0),
             mock.call.setUserPassword('alice', 'pw', 0),
             mock.call.agentSetResponseTimeout(5, 0),
             mock.call.setUserPassword('alice', '$6$salt$hash', 1)],
            self.domain.method_calls)

    def test_freeze_thaw(self):
        self.domain.fsFreeze.return_value = 1
        self.domain.fsThaw.return_value = 1
        self.assertEqual(1, self.agent.fs_freeze())
        self.assertEqual(1, self.agent.fs_freeze(('/data',)))
        self.assertEqual(1, self.agent.fs_thaw())
        self.assertEqual(
            [mock.call.agentSetResponseTimeout(5, 0),
             mock.call.fsFreeze(None, 0),
             mock.call.agentSetResponseTimeout(5, 0),
             mock.call.fsFreeze(['/data'], 0),
             mock.call.agentSetResponseTimeout(5, 0),
             mock.call.fsThaw(None, 0)],
            self.domain.method_calls)

    def test_dedicated_errors_are_translated(self):
        self.domain.setUserPassword.side_effect = FakeLibvirtError(
            74, 'argument unsupported: QEMU guest agent is not configured')
        self.assertRaises(agent.AgentNotConfigured,
                          self.agent.set_user_password, 'alice', 'pw')

    def test_dedicated_timeout_by_elapsed_time(self):
        def hang(*args):
            self.clock.now += 5.0
            raise FakeLibvirtError(86, 'Guest agent is not responding')
        self.domain.fsFreeze.side_effect = hang
        ex = self.assertRaises(agent.AgentTimeout, self.agent.fs_freeze)
        self.assertIn('guest-fsfreeze-freeze within 5.0 s', str(ex))


class TestErrorMapping(AgentTestCase):

    def test_74_not_configured(self):
        self.raising(74, 'argument unsupported: QEMU guest agent is not '
                         'configured')
        ex = self.assertRaises(agent.AgentNotConfigured, self.agent.ping)
        self.assertIn('hw_qemu_guest_agent=yes', str(ex))

    def test_74_for_something_else_is_a_failure(self):
        self.raising(74, 'argument unsupported: unsupported flags')
        ex = self.assertRaises(agent.AgentCommandFailed, self.agent.ping)
        self.assertIn('unsupported flags', str(ex))

    def test_86_at_once_is_not_connected(self):
        self.raising(86, NOT_CONNECTED)
        ex = self.assertRaises(agent.AgentNotConnected, self.agent.ping)
        self.assertIn('is qemu-ga installed and running', str(ex))
        self.raising(86, 'Guest agent is not responding')
        self.assertRaises(agent.AgentNotConnected, self.agent.ping)

    def test_86_not_available_for_now_is_timeout(self):
        self.raising(86, NOT_AVAILABLE)
        ex = self.assertRaises(agent.AgentTimeout, self.agent.ping)
        self.assertEqual({'command': 'guest-ping', 'timeout': 5.0}, ex.kwargs)
        self.assertIn('did not answer guest-ping within 5.0 s', str(ex))

    def test_86_after_the_timeout_is_timeout(self):
        self.raising(86, 'Guest agent is not responding', after=5.0)
        self.assertRaises(agent.AgentTimeout, self.agent.ping)

    def test_timeout_reports_the_time_waited(self):
        # A raw command waits 5 s for libvirt's guest-sync even when its
        # own timeout is shorter.
        self.raising(86, NOT_AVAILABLE, after=5.0)
        ex = self.assertRaises(agent.AgentTimeout, self.agent._call,
                               'guest-ping', timeout=2)
        self.assertIn('within 5.0 s', str(ex))

    def test_112_is_timeout(self):
        self.raising(112, "Guest agent didn't respond within timeout")
        self.assertRaises(agent.AgentTimeout, self.agent.ping)

    def test_113_is_failed(self):
        self.raising(113, 'Guest agent responded with failure: boom')
        ex = self.assertRaises(agent.AgentCommandFailed, self.agent.ping)
        self.assertEqual('guest-ping', ex.kwargs['command'])
        self.assertIn('boom', ex.kwargs['reason'])

    def test_1_disabled(self):
        self.raising(1, REFUSED % ('guest-exec', 'Command guest-exec has been '
                                                 'disabled'))
        ex = self.assertRaises(agent.AgentCommandDisabled,
                               self.agent.exec_start, ['/bin/true'])
        self.assertEqual('guest-exec', ex.kwargs['command'])
        self.assertIn('BLACKLIST_RPC', str(ex))

    def test_1_disabled_while_frozen_says_thaw(self):
        self.raising(1, REFUSED % ('guest-exec', 'Command guest-exec has been '
                                   'disabled: the agent is in frozen state'))
        ex = self.assertRaises(agent.AgentCommandDisabled,
                               self.agent.exec_start, ['/bin/true'])
        self.assertIn('thaw them', str(ex))

    def test_1_failed_reason_is_the_agent_text(self):
        self.raising(1, REFUSED % ('guest-get-time', 'The command '
                                   'guest-get-time has not been found'))
        ex = self.assertRaises(agent.AgentCommandFailed, self.agent.ping)
        self.assertEqual('The command guest-get-time has not been found',
                         ex.kwargs['reason'])

    def test_reply_too_large_for_libvirt(self):
        self.raising(1, 'internal error: Unable to encode message payload')
        ex = self.assertRaises(agent.AgentCommandFailed,
                               self.agent.exec_status, 7)
        self.assertIn('4 MiB', str(ex))
        self.assertIn('redirecting them to a file', str(ex))
        self.raising(1, 'internal error: No complete agent response found in '
                        '10485760 bytes: Numerical result out of range')
        ex = self.assertRaises(agent.AgentCommandFailed,
                               self.agent.exec_status, 7)
        self.assertIn('restart qemu-ga', str(ex))

    def test_other_libvirt_error_is_a_failure_with_its_text(self):
        self.raising(55, 'Requested operation is not valid: domain is not '
                         'running')
        ex = self.assertRaises(agent.AgentCommandFailed, self.agent.ping)
        self.assertIn('domain is not running', str(ex))

    def test_error_text_that_cannot_be_read(self):
        def fail(*args):
            raise UnreadableLibvirtError(86, None)
        self.qemu.qemuAgentCommand.side_effect = fail
        self.assertRaises(agent.AgentNotConnected, self.agent.ping)

    def test_error_without_libvirt_error_details(self):
        self.qemu.qemuAgentCommand.side_effect = FakeLibvirtError(None, None)
        self.qemu.qemuAgentCommand.side_effect.args = (
            'virDomainQemuAgentCommand() failed',)
        ex = self.assertRaises(agent.AgentCommandFailed, self.agent.ping)
        self.assertEqual('virDomainQemuAgentCommand() failed',
                         ex.kwargs['reason'])

    def test_error_text_in_another_codepage(self):
        gb2312 = '\u5bc6\u7801\u4e0d\u6ee1\u8db3'.encode('gb2312')
        self.raising(1, b"unable to execute QEMU agent command "
                        b"'guest-set-user-password': " + gb2312)
        ex = self.assertRaises(agent.AgentCommandFailed, self.agent.ping)
        self.assertIn('\ufffd', ex.kwargs['reason'])
        self.assertNotIn('unable to execute', ex.kwargs['reason'])

    def test_libvirt_cannot_build_its_error(self):
        # What libvirt-python raises when the C error text is not UTF-8.
        self.domain.setUserPassword.side_effect = UnicodeDecodeError(
            'utf-8', b'\xd6\xb4', 0, 1, 'invalid continuation byte')
        ex = self.assertRaises(agent.AgentCommandFailed,
                               self.agent.set_user_password, 'Administrator',
                               'pw')
        self.assertIn('could not decode', str(ex))


class TestExec(AgentTestCase):

    def status(self, **fields):
        return reply(dict({'exited': True, 'exitcode': 0}, **fields))

    def test_exec_start_request(self):
        self.qemu.qemuAgentCommand.return_value = reply({'pid': 7})
        self.assertEqual(7, self.agent.exec_start(
            ['/bin/sh', '-c', 'cat'], env=['A=1'], stdin=b'in'))
        self.agent.exec_start(['/bin/env'], env={'B': '2'})
        self.assertEqual(
            [{'execute': 'guest-exec', 'arguments': {
                'path': '/bin/sh', 'arg': ['-c', 'cat'],
                'capture-output': True, 'env': ['A=1'],
                'input-data': b64(b'in')}},
             {'execute': 'guest-exec', 'arguments': {
                 'path': '/bin/env', 'arg': [], 'capture-output': True,
                 'env': ['B=2']}}],
            self.requests())

    def test_status_decodes_and_truncates(self):
        self.qemu.qemuAgentCommand.return_value = self.status(
            exitcode=3, **{'out-data': b64(b'0123456789'),
                           'err-data': b64(b'oops'), 'err-truncated': True})
        self.assertEqual(
            agent.ExecResult(pid=7, exited=True, exitcode=3, signal=None,
                             stdout=b'01234567', stderr=b'oops',
                             stdout_truncated=True, stderr_truncated=True),
            self.agent.exec_status(7))

    def test_status_of_running_process_is_not_kept(self):
        self.qemu.qemuAgentCommand.side_effect = [
            reply({'exited': False}), self.status(signal=9)]
        self.assertFalse(self.agent.exec_status(7).exited)
        self.assertEqual(9, self.agent.exec_status(7).signal)

    def test_retried_status_returns_the_kept_result(self):
        self.qemu.qemuAgentCommand.side_effect = [
            self.status(**{'out-data': b64(b'hi')}),
            FakeLibvirtError(1, REFUSED % ('guest-exec-status',
                                           "Invalid parameter 'pid'"))]
        first = self.agent.exec_status(7)
        self.assertEqual(first, self.agent.exec_status(7))
        # Same pid on another domain is another process.
        other = agent.GuestAgent(mock.Mock(**{'UUIDString.return_value':
                                              'uuid-2'}),
                                 qemu=self.qemu, results=self.results)
        self.assertRaises(agent.ExecPidUnknown, other.exec_status, 7)
        self.assertEqual(2, self.qemu.qemuAgentCommand.call_count)

    def test_new_process_with_a_kept_pid(self):
        old = agent.ExecResult(7, True, 0, None, b'old', b'', False, False)
        self.results.put(('uuid-1', 7), old)
        self.qemu.qemuAgentCommand.side_effect = [
            reply({'pid': 7}), self.status(**{'out-data': b64(b'new')})]
        self.assertEqual(7, self.agent.exec_start(['/bin/echo', 'new']))
        self.assertEqual(b'new', self.agent.exec_status(7).stdout)

    def test_unknown_pid(self):
        self.raising(1, REFUSED % ('guest-exec-status',
                                   "Invalid parameter 'pid'"))
        ex = self.assertRaises(agent.ExecPidUnknown, self.agent.exec_status,
                               42)
        self.assertEqual({'pid': 42}, ex.kwargs)
        self.assertIn('pid 42', str(ex))

    def test_result_collected_by_a_concurrent_caller(self):
        kept = agent.ExecResult(7, True, 0, None, b'', b'', False, False)

        def collected_meanwhile(*args):
            self.results.put(('uuid-1', 7), kept)
            raise FakeLibvirtError(1, REFUSED % ('guest-exec-status',
                                                 "Invalid parameter 'pid'"))
        self.results.get = mock.Mock(side_effect=[None, kept])
        self.qemu.qemuAgentCommand.side_effect = collected_meanwhile
        self.assertIs(kept, self.agent.exec_status(7))

    def test_other_status_failures_are_not_unknown_pid(self):
        self.raising(1, REFUSED % ('guest-exec-status', 'boom'))
        self.assertRaises(agent.AgentCommandFailed, self.agent.exec_status, 7)

    def run_until(self, end, timeout=30.0):
        """exec_run of a process that exits at clock time start + end."""
        def command(dom, request, timeout, flags):
            execute = json.loads(request)['execute']
            if execute == 'guest-exec':
                self.start = self.clock.now
                return reply({'pid': 5})
            self.clock.now += 0.0015  # one agent round trip
            if self.clock.now - self.start >= end:
                return self.status()
            return reply({'exited': False})
        self.qemu.qemuAgentCommand.side_effect = command
        result = self.agent.exec_run(['/bin/sleep', str(end)],
                                     timeout=timeout)
        return result, self.clock.now - self.start

    def test_poll_schedule_backs_off(self):
        result, took = self.run_until(0.1)
        self.assertTrue(result.exited)
        sleeps = self.clock.sleeps
        self.assertLessEqual(sleeps[0], 0.001)
        self.assertEqual(sorted(sleeps), sleeps)
        # At most one poll interval and one round trip after the end.
        self.assertLess(took - 0.1, 0.1 * agent._POLL_FRACTION + 0.0015)
        self.assertLess(len(sleeps), 40)

    def test_poll_interval_is_capped(self):
        result, took = self.run_until(60.0, timeout=120.0)
        self.assertEqual(agent._POLL_MAX, max(self.clock.sleeps))
        self.assertLess(took - 60.0, agent._POLL_MAX + 0.01)

    def test_deadline_returns_the_running_process(self):
        result, took = self.run_until(100.0, timeout=0.5)
        self.assertEqual(agent.ExecResult(5, False, None, None, b'', b'',
                                          False, False), result)
        self.assertLess(took, 0.51)
        self.assertLessEqual(sum(self.clock.sleeps), 0.5)
        self.assertIsNone(self.results.get(('uuid-1', 5)))

    def test_wait_for_a_started_pid(self):
        self.qemu.qemuAgentCommand.side_effect = [
            reply({'exited': False}), self.status(exitcode=4)]
        self.assertEqual(4, self.agent.exec_wait(9, timeout=5).exitcode)
        self.assertEqual([0.001, 0.001], self.clock.sleeps)

    def test_run_keeps_the_final_result(self):
        result, took = self.run_until(0.01)
        self.assertEqual(result, self.results.get(('uuid-1', 5)))


class TestExpiringCache(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.clock = FakeTime()
        self.useFixture(fixtures.MonkeyPatch('nova_qga_ext.agent.time',
                                             self.clock))
        self.cache = agent.ExpiringCache(max_entries=2, ttl=10.0)

    def test_expiry(self):
        self.cache.put(('u', 1), 'r1')
        self.clock.now += 9.9
        self.assertEqual('r1', self.cache.get(('u', 1)))
        self.clock.now += 0.1
        self.assertIsNone(self.cache.get(('u', 1)))
        self.assertEqual(0, len(self.cache))

    def test_bound_drops_the_oldest(self):
        for pid in (1, 2, 3):
            self.cache.put(('u', pid), pid)
        self.assertEqual(2, len(self.cache))
        self.assertIsNone(self.cache.get(('u', 1)))
        self.assertEqual(3, self.cache.get(('u', 3)))

    def test_concurrent_use_keeps_the_bound(self):
        self.useFixture(fixtures.MonkeyPatch('nova_qga_ext.agent.time', time))
        cache = agent.ExpiringCache(max_entries=50, ttl=60.0)
        wrong = []

        def worker(n):
            for pid in range(n * 1000, n * 1000 + 500):
                cache.put(('u', pid), pid)
                if cache.get(('u', pid)) not in (pid, None):
                    wrong.append(pid)
        threads = [threading.Thread(target=worker, args=(n,))
                   for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.assertEqual([], wrong)
        self.assertEqual(50, len(cache))

    def test_defaults_are_process_wide(self):
        guest_agent = agent.GuestAgent(mock.Mock(), qemu=mock.Mock())
        self.assertIs(agent.RESULTS, guest_agent._results)
        self.assertIs(agent.AGENT_INFO, guest_agent._agent_info)


class TestSecrets(AgentTestCase):

    SECRETS = ('pa55-secret', 'ENV-SECRET', 'STDIN-SECRET')

    def assertNoSecret(self, text):
        for secret in self.SECRETS:
            self.assertNotIn(secret, text)

    def test_no_secret_in_logs_or_errors(self):
        self.qemu.qemuAgentCommand.side_effect = [
            reply({'pid': 3}), reply({'exited': True, 'exitcode': 0})]
        self.agent.exec_run(['/bin/sh', '-c', 'cat'],
                            env=['TOKEN=ENV-SECRET'], stdin=b'STDIN-SECRET')
        self.agent.set_user_password('alice', 'pa55-secret')
        # The secrets did reach the agent, so their absence below means
        # something.
        self.assertIn(b64(b'STDIN-SECRET'), self.qemu.qemuAgentCommand.
                      call_args_list[0].args[1])
        self.assertIn('TOKEN=ENV-SECRET', self.qemu.qemuAgentCommand.
                      call_args_list[0].args[1])
        self.domain.setUserPassword.assert_called_with('alice', 'pa55-secret',
                                                       0)

        self.domain.setUserPassword.side_effect = FakeLibvirtError(
            1, REFUSED % ('guest-set-user-password', 'chpasswd failed'))
        ex = self.assertRaises(agent.AgentCommandFailed,
                               self.agent.set_user_password, 'alice',
                               'pa55-secret')
        self.assertNoSecret(str(ex))
        self.raising(86, NOT_AVAILABLE)
        ex = self.assertRaises(agent.AgentTimeout, self.agent.exec_start,
                               ['/bin/cat'], env=['TOKEN=ENV-SECRET'],
                               stdin=b'STDIN-SECRET')
        self.assertNoSecret(str(ex))

        self.assertIn('guest-exec started pid 3', self.log.output)
        self.assertIn('12 bytes of input', self.log.output)
        self.assertIn('alice', self.log.output)
        self.assertNoSecret(self.log.output)
