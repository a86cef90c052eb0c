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
import io
import json

import fixtures
from osc_lib import exceptions

from nova_qga_ext.osc.v2 import server_exec
from tests.unit.osc import fakes

# Not valid UTF-8, with a NUL and a lone CR: must arrive byte for byte.
BINARY = b'\x00\xff\xfe line\r\n\x80tail'


def exec_reply(stdout=b'', stderr=b'', action='guestExec', **fields):
    result = {'pid': 4242, 'exited': True, 'exitcode': 0, 'signal': None,
              'stdout': base64.b64encode(stdout).decode(),
              'stderr': base64.b64encode(stderr).decode(),
              'stdout_truncated': False, 'stderr_truncated': False}
    result.update(fields)
    return fakes.response(200, {action: result})


class TestExecParser(fakes.CommandTestCase):

    def setUp(self):
        super().setUp()
        # argparse reports usage errors on the real stderr.
        self.usage = io.StringIO()
        self.useFixture(fixtures.MonkeyPatch('sys.stderr', self.usage))

    def parse_exec(self, argv):
        return self.parse(server_exec.ExecServer, argv)[1]

    def test_options_then_command_after_double_dash(self):
        args = self.parse_exec(['web1', '--timeout', '5', '--env', 'A=1',
                                '--env', 'B=x=y', '--stdin', '--', 'ls',
                                '-l', '--timeout'])
        self.assertEqual('web1', args.server)
        self.assertEqual(5, args.timeout)
        self.assertEqual(['A=1', 'B=x=y'], args.env)
        self.assertTrue(args.stdin)
        self.assertEqual(['ls', '-l', '--timeout'], args.command)
        self.assertIsNone(args.formatter)

    def test_later_double_dash_belongs_to_the_guest_command(self):
        args = self.parse_exec(['web1', '--', 'grep', '--', '-v', 'f'])
        self.assertEqual(['grep', '--', '-v', 'f'], args.command)

    def test_options_before_the_server(self):
        args = self.parse_exec(['--no-wait', 'status', '--', 'true'])
        self.assertEqual('status', args.server)
        self.assertTrue(args.no_wait)
        self.assertEqual(['true'], args.command)

    def test_command_without_double_dash(self):
        self.assertEqual(['uptime'],
                         self.parse_exec(['web1', 'uptime']).command)

    def test_missing_command_is_a_usage_error(self):
        for argv in (['web1'], ['web1', '--']):
            exc = self.assertRaises(SystemExit, self.parse_exec, argv)
            self.assertEqual(2, exc.code)
        self.assertIn('the guest command is missing', self.usage.getvalue())

    def test_timeout_and_no_wait_exclude_each_other(self):
        self.assertRaises(SystemExit, self.parse_exec,
                          ['web1', '--timeout', '5', '--no-wait', '--', 'x'])

    def test_timeout_must_be_positive(self):
        for value in ('0', '-3', 'soon'):
            self.assertRaises(SystemExit, self.parse_exec,
                              ['web1', '--timeout', value, '--', 'x'])

    def test_env_values_stay_out_of_errors_and_reprs(self):
        exc = self.assertRaises(SystemExit, self.parse_exec,
                                ['web1', '--env', '=hunter2', '--', 'x'])
        self.assertEqual(2, exc.code)
        self.assertNotIn('hunter2', self.usage.getvalue())
        args = self.parse_exec(['web1', '--env', 'TOKEN=hunter2', '--', 'x'])
        self.assertNotIn('hunter2', repr(args))

    def test_bare_env_name_takes_the_local_value(self):
        self.useFixture(fixtures.EnvironmentVariable('QGA_T_TOKEN', 's=3'))
        args = self.parse_exec(['web1', '--env', 'QGA_T_TOKEN', '--', 'x'])
        self.assertEqual(['QGA_T_TOKEN=s=3'], args.env)

    def test_bare_env_name_must_be_set_locally(self):
        self.useFixture(fixtures.EnvironmentVariable('QGA_T_UNSET'))
        self.assertRaises(SystemExit, self.parse_exec,
                          ['web1', '--env', 'QGA_T_UNSET', '--', 'x'])
        self.assertIn('QGA_T_UNSET is not set', self.usage.getvalue())


class TestExec(fakes.CommandTestCase):

    def exec(self, argv, reply, stdin=b''):
        self.compute.replies.append(reply)
        return self.run_command(server_exec.ExecServer, argv, stdin)

    def test_output_bytes_and_exit_code_of_the_guest(self):
        status, out, err = self.exec(
            ['web1', '--', 'cat', '/blob'],
            exec_reply(stdout=BINARY, stderr=b'warn\xff\n', exitcode=3))
        self.assertEqual(3, status)
        self.assertEqual(BINARY, out)
        self.assertEqual(b'warn\xff\n', err)
        (url, kwargs), = self.compute.posts
        self.assertEqual('/servers/%s/action' % fakes.SERVER_ID, url)
        self.assertEqual(
            {'guestExec': {'command': ['cat', '/blob'], 'wait': True}},
            kwargs['json'])
        self.assertEqual('2.1', kwargs['microversion'])
        # Nothing secret in this body: keystoneauth may log it.
        self.assertNotIn('log', kwargs)
        self.assertEqual([('web1', False, False)], self.compute.lookups)

    def test_success_exits_zero(self):
        status, out, err = self.exec(['web1', '--', 'true'], exec_reply())
        self.assertEqual((0, b'', b''), (status, out, err))

    def test_env_stdin_and_timeout_are_sent_unlogged(self):
        status, _out, _err = self.exec(
            ['web1', '--timeout', '90', '--env', 'A=1', '--env', 'B=2',
             '--stdin', '--', 'sh', '-c', 'cat'], exec_reply(), BINARY)
        self.assertEqual(0, status)
        (_url, kwargs), = self.compute.posts
        body = kwargs['json']['guestExec']
        self.assertEqual(['A=1', 'B=2'], body['env'])
        self.assertEqual(BINARY, base64.b64decode(body['input']))
        self.assertEqual(90, body['timeout'])
        self.assertIs(False, kwargs['log'])

    def test_signal_maps_to_128_plus_signal(self):
        status, _out, _err = self.exec(
            ['web1', '--', 'sleep', '100'],
            exec_reply(exitcode=None, signal=9))
        self.assertEqual(137, status)

    def test_exit_code_outside_a_byte_is_failure(self):
        for code in (256, 3221225477, -1):
            status, _out, _err = self.exec(['web1', '--', 'x'],
                                           exec_reply(exitcode=code))
            self.assertEqual(1, status, code)

    def test_still_running_prints_pid_and_hint(self):
        status, out, err = self.exec(
            ['web1', '--timeout', '1', '--', 'sleep', '60'],
            exec_reply(exited=False, exitcode=None))
        self.assertEqual(server_exec.EXIT_STILL_RUNNING, status)
        self.assertEqual(124, status)
        self.assertEqual(b'4242\n', out)
        self.assertIn(('openstack server exec status %s 4242'
                       % fakes.SERVER_ID).encode(), err)

    def test_no_wait_prints_pid(self):
        status, out, err = self.exec(
            ['web1', '--no-wait', '--', 'sleep', '60'],
            fakes.response(202, {'guestExec': {'pid': 77}}))
        self.assertEqual((0, b'77\n', b''), (status, out, err))
        self.assertIs(False, self.compute.bodies[0]['guestExec']['wait'])

    def test_no_wait_json(self):
        status, out, _err = self.exec(
            ['web1', '--no-wait', '-f', 'json', '--', 'sleep', '60'],
            fakes.response(202, {'guestExec': {'pid': 77}}))
        self.assertEqual(0, status)
        self.assertEqual({'server': fakes.SERVER_ID, 'pid': 77},
                         json.loads(out))

    def test_json_is_the_structured_result_with_the_same_exit_code(self):
        status, out, err = self.exec(
            ['web1', '-f', 'json', '--', 'x'],
            exec_reply(stdout=b'caf\xc3\xa9 \xff\n', stderr=b'e',
                       exitcode=2, stdout_truncated=True))
        self.assertEqual(2, status)
        self.assertEqual({'server': fakes.SERVER_ID, 'pid': 4242,
                          'exited': True, 'exitcode': 2, 'signal': None,
                          'stdout': 'caf\u00e9 \\xff\n', 'stderr': 'e',
                          'stdout_truncated': True,
                          'stderr_truncated': False}, json.loads(out))
        self.assertEqual(b'', err)

    def test_value_format_with_column(self):
        status, out, _err = self.exec(
            ['web1', '-f', 'value', '-c', 'exitcode', '--', 'x'],
            exec_reply(exitcode=5))
        self.assertEqual((5, b'5\n'), (status, out))

    def test_json_still_running_keeps_hint_and_status(self):
        status, out, err = self.exec(
            ['web1', '-f', 'json', '--', 'x'],
            exec_reply(exited=False, exitcode=None))
        self.assertEqual(124, status)
        self.assertIs(False, json.loads(out)['exited'])
        self.assertIn(b'still running', err)

    def test_truncation_is_reported_after_the_output(self):
        _status, out, err = self.exec(
            ['web1', '--', 'x'],
            exec_reply(stdout=b'o', stderr=b'e', stderr_truncated=True))
        self.assertEqual(b'o', out)
        self.assertTrue(err.startswith(b'e'))
        self.assertIn(b"stderr was cut at the server's output limit", err)
        self.assertNotIn(b'stdout was cut', err)

    def test_api_error_is_one_line_with_the_server_message(self):
        self.compute.replies.append(fakes.response(
            409, {'conflictingRequest': {
                'code': 409,
                'message': 'QEMU guest agent is not\nresponding'}},
            {'x-openstack-request-id': 'req-123'}))
        exc = self.assertRaises(
            exceptions.CommandError, self.run_command,
            server_exec.ExecServer, ['web1', '--', 'x'])
        self.assertEqual(
            'guestExec on server %s failed: QEMU guest agent is not '
            'responding (HTTP 409, request req-123)' % fakes.SERVER_ID,
            str(exc))

    def test_unknown_server_posts_nothing(self):
        exc = self.assertRaises(
            exceptions.CommandError, self.run_command,
            server_exec.ExecServer, ['nope', '--all-projects', '--', 'x'])
        self.assertEqual(
            'Looking up server nope failed: No Server found for nope',
            str(exc))
        self.assertEqual([('nope', False, True)], self.compute.lookups)
        self.assertEqual([], self.compute.posts)


class TestExecStatus(fakes.CommandTestCase):

    def status(self, argv, reply):
        self.compute.replies.append(reply)
        return self.run_command(server_exec.ShowServerExecStatus, argv)

    def test_finished_process_shows_like_exec(self):
        status, out, err = self.status(
            [fakes.SERVER_ID, '4242'],
            exec_reply(stdout=BINARY, stderr=b'2', exitcode=7,
                       action='guestExecStatus'))
        self.assertEqual((7, BINARY, b'2'), (status, out, err))
        self.assertEqual([{'guestExecStatus': {'pid': 4242}}],
                         self.compute.bodies)

    def test_running_process(self):
        status, out, err = self.status(
            ['web1', '4242'], exec_reply(exited=False, exitcode=None,
                                         action='guestExecStatus'))
        self.assertEqual((124, b'4242\n'), (status, out))
        self.assertIn(b'still running', err)

    def test_unknown_pid_error(self):
        self.compute.replies.append(fakes.response(
            404, {'itemNotFound': {'code': 404,
                                   'message': 'No guest process 9'}}))
        exc = self.assertRaises(
            exceptions.CommandError, self.run_command,
            server_exec.ShowServerExecStatus, ['web1', '9'])
        self.assertIn('No guest process 9 (HTTP 404)', str(exc))

    def test_pid_must_be_a_positive_integer(self):
        self.useFixture(fixtures.MonkeyPatch('sys.stderr', io.StringIO()))
        for pid in ('0', 'abc'):
            self.assertRaises(SystemExit, self.parse,
                              server_exec.ShowServerExecStatus,
                              ['web1', pid])


class TestExitStatus(fakes.CommandTestCase):

    def test_mapping(self):
        cases = [
            ({'pid': 1}, 0),
            ({'exited': False, 'signal': None, 'exitcode': None}, 124),
            ({'exited': True, 'signal': 15, 'exitcode': None}, 143),
            ({'exited': True, 'signal': None, 'exitcode': 0}, 0),
            ({'exited': True, 'signal': None, 'exitcode': 255}, 255),
            ({'exited': True, 'signal': None, 'exitcode': 256}, 1),
        ]
        for result, expected in cases:
            self.assertEqual(expected, server_exec.exit_status(result),
                             result)
