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

import io
import logging
from unittest import mock

import fixtures
from osc_lib import exceptions

from nova_qga_ext.osc.v2 import server_password
from tests.unit.osc import fakes

SECRET = 'Tr0ub4dor&3'


class TestSetServerUserPassword(fakes.CommandTestCase):

    def set_password(self, argv, stdin=b'', reply=None):
        self.compute.replies.append(
            fakes.response(202) if reply is None else reply)
        return self.run_command(
            server_password.SetServerUserPassword, argv, stdin)

    def sent(self):
        (url, kwargs), = self.compute.posts
        self.assertEqual('/servers/%s/action' % fakes.SERVER_ID, url)
        # The body carries the password: keystoneauth must not log it.
        self.assertIs(False, kwargs['log'])
        return kwargs['json']

    def test_password_option(self):
        status, out, err = self.set_password(
            ['web1', 'alice', '--password', SECRET])
        self.assertEqual((0, b'', b''), (status, out, err))
        self.assertEqual(
            {'changePassword': {'adminPass': SECRET, 'userName': 'alice'}},
            self.sent())
        # A plain str, not the masking wrapper, goes into the JSON body.
        self.assertIs(str, type(self.sent()['changePassword']['adminPass']))

    def test_crypted(self):
        hashed = '$6$salt$' + 'x' * 86
        self.set_password(['web1', 'root', '--crypted', '--password', hashed])
        self.assertEqual(
            {'changePassword': {'adminPass': hashed, 'userName': 'root',
                                'crypted': True}},
            self.sent())

    def test_password_stdin_drops_one_trailing_newline(self):
        for stdin, expected in ((b'p w\n', 'p w'), (b'p w\r\n', 'p w'),
                                (b'p w', 'p w'), (b' p \n', ' p ')):
            self.compute.posts.clear()
            self.set_password(['web1', 'alice', '--password-stdin'], stdin)
            self.assertEqual(expected,
                             self.sent()['changePassword']['adminPass'])

    def test_password_stdin_must_be_one_line(self):
        exc = self.assertRaises(
            exceptions.CommandError, self.set_password,
            ['web1', 'alice', '--password-stdin'], b'one\ntwo\n')
        self.assertIn('single line', str(exc))
        self.assertEqual([], self.compute.posts)

    def test_empty_password_is_refused(self):
        for argv, stdin in ((['--password', ''], b''),
                            (['--password-stdin'], b'\n')):
            exc = self.assertRaises(
                exceptions.CommandError, self.set_password,
                ['web1', 'alice'] + argv, stdin)
            self.assertEqual('The password must not be empty', str(exc))
        self.assertEqual([], self.compute.posts)

    def test_sources_exclude_each_other(self):
        self.useFixture(fixtures.MonkeyPatch('sys.stderr', io.StringIO()))
        self.assertRaises(
            SystemExit, self.parse, server_password.SetServerUserPassword,
            ['web1', 'alice', '--password', 'x', '--password-stdin'])

    def test_password_is_masked_in_parsed_args(self):
        _cmd, args = self.parse(server_password.SetServerUserPassword,
                                ['web1', 'alice', '--password', SECRET])
        self.assertNotIn(SECRET, repr(args))
        self.assertEqual(SECRET, args.password)

    def test_nothing_secret_reaches_debug_logs(self):
        logs = self.useFixture(fixtures.FakeLogger(level=logging.DEBUG))
        self.set_password(['web1', 'alice', '--password', SECRET])
        self.assertIn('run(', logs.output)
        self.assertNotIn(SECRET, logs.output)

    def test_refuses_to_prompt_without_a_terminal(self):
        exc = self.assertRaises(
            exceptions.CommandError, self.set_password, ['web1', 'alice'])
        self.assertIn('standard input is not a terminal', str(exc))
        self.assertEqual([], self.compute.posts)

    @mock.patch('getpass.getpass')
    def test_prompt_asks_twice(self, getpass):
        getpass.side_effect = [SECRET, SECRET]
        with mock.patch.object(self.app.stdin, 'isatty', return_value=True):
            cmd, args = self.parse(server_password.SetServerUserPassword,
                                   ['web1', 'alice'])
            self.compute.replies.append(fakes.response(202))
            self.assertEqual(0, cmd.run(args))
        self.assertEqual([mock.call('New password for alice: '),
                          mock.call('Retype new password for alice: ')],
                         getpass.call_args_list)
        self.assertEqual(SECRET, self.sent()['changePassword']['adminPass'])

    @mock.patch('getpass.getpass')
    def test_prompt_mismatch_changes_nothing(self, getpass):
        getpass.side_effect = [SECRET, SECRET + 'x']
        with mock.patch.object(self.app.stdin, 'isatty', return_value=True):
            cmd, args = self.parse(server_password.SetServerUserPassword,
                                   ['web1', 'alice'])
            exc = self.assertRaises(exceptions.CommandError, cmd.run, args)
        self.assertEqual('The passwords do not match; password unchanged',
                         str(exc))
        self.assertNotIn(SECRET, str(exc))
        self.assertEqual([], self.compute.posts)

    @mock.patch('getpass.getpass', side_effect=EOFError)
    def test_prompt_end_of_input(self, getpass):
        with mock.patch.object(self.app.stdin, 'isatty', return_value=True):
            cmd, args = self.parse(server_password.SetServerUserPassword,
                                   ['web1', 'alice'])
            self.assertRaises(exceptions.CommandError, cmd.run, args)
        self.assertEqual([], self.compute.posts)

    def test_api_error(self):
        exc = self.assertRaises(
            exceptions.CommandError, self.set_password,
            ['web1', 'bob', '--password', SECRET],
            reply=fakes.response(409, {'conflictingRequest': {
                'code': 409,
                'message': "Command 'guest-set-user-password' is disabled "
                           "in the guest agent"}}))
        self.assertEqual(
            "changePassword on server %s failed: Command "
            "'guest-set-user-password' is disabled in the guest agent "
            "(HTTP 409)" % fakes.SERVER_ID, str(exc))
        self.assertNotIn(SECRET, str(exc))
