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

"""The plugin's OSC entry points: names, command matching, loading."""

import base64
import configparser
import importlib
from importlib import metadata
import logging
import os

from cliff import commandmanager
import fixtures
from osc_lib import clientmanager
from requests_mock.contrib import fixture as requests_fixture
import stevedore
import testtools

from nova_qga_ext.osc import plugin
from nova_qga_ext.osc.v2 import server_exec
from nova_qga_ext.osc.v2 import server_password
from tests.unit.osc import fakes

SETUP_CFG = os.path.join(os.path.dirname(__file__), '..', '..', '..',
                         'setup.cfg')
COMPUTE_GROUP = 'openstack.compute.v2'


def setup_cfg_entry_points(group):
    """{name: 'module:attr'} of one entry point group in setup.cfg."""
    config = configparser.ConfigParser()
    config.read(SETUP_CFG)
    lines = config['entry_points'][group].strip().splitlines()
    return dict(tuple(part.strip() for part in line.split('=', 1))
                for line in lines)


def load(target):
    module, _sep, attr = target.partition(':')
    module = importlib.import_module(module)
    return getattr(module, attr) if attr else module


def installed():
    try:
        metadata.distribution('nova-qga-ext')
    except metadata.PackageNotFoundError:
        return False
    return True


class TestCommandNames(testtools.TestCase):
    """setup.cfg's commands beside OSC's own, as cliff matches them."""

    def setUp(self):
        super().setUp()
        self.ours = setup_cfg_entry_points(COMPUTE_GROUP)
        osc = metadata.distribution('python-openstackclient')
        self.osc_names = {ep.name for ep in osc.entry_points
                          if ep.group == COMPUTE_GROUP}
        self.manager = commandmanager.CommandManager(
            'nova_qga_ext.tests.no_such_group')
        for ep in osc.entry_points:
            if ep.group == COMPUTE_GROUP:
                self.manager.add_command(ep.name.replace('_', ' '),
                                         ep.load())
        for name, target in self.ours.items():
            self.manager.add_command(name.replace('_', ' '), load(target))

    def find(self, argv):
        cls, _name, args = self.manager.find_command(argv)
        return cls, args

    def test_entry_points_name_their_classes(self):
        self.assertEqual(
            {'server_user_password_set': server_password.SetServerUserPassword,
             'server_exec': server_exec.ExecServer,
             'server_exec_status': server_exec.ShowServerExecStatus},
            {name: load(target) for name, target in self.ours.items()
             if not name.startswith('server_snapshot')})
        self.assertIs(plugin, load(
            setup_cfg_entry_points('openstack.cli.extension')['qga_ext']))

    def test_no_collision_with_openstackclient(self):
        self.assertIn('server_image_create', self.osc_names)
        self.assertEqual(set(), set(self.ours) & self.osc_names)

    def test_exec_and_exec_status(self):
        self.assertEqual(
            (server_exec.ShowServerExecStatus, ['web1', '42']),
            self.find(['server', 'exec', 'status', 'web1', '42']))
        self.assertEqual(
            (server_exec.ExecServer, ['web1', '--', 'ls']),
            self.find(['server', 'exec', 'web1', '--', 'ls']))
        self.assertEqual(
            (server_exec.ExecServer, ['web1', 'status']),
            self.find(['server', 'exec', 'web1', 'status']))

    def test_server_named_like_status_needs_an_option_first(self):
        # cliff takes "st" as an abbreviation of "status": documented in
        # the exec command's help.
        self.assertIs(server_exec.ShowServerExecStatus,
                      self.find(['server', 'exec', 'st', '--', 'ls'])[0])
        self.assertEqual(
            (server_exec.ExecServer, ['--timeout', '9', 'st', '--', 'ls']),
            self.find(['server', 'exec', '--timeout', '9', 'st', '--',
                       'ls']))
        self.assertEqual(
            (server_exec.ExecServer, ['--', 'status', 'ls']),
            self.find(['server', 'exec', '--', 'status', 'ls']))


@testtools.skipUnless(installed(), 'the nova-qga-ext distribution is not '
                      'installed, so its entry points cannot be loaded')
class TestInstalledEntryPoints(testtools.TestCase):

    def test_stevedore_loads_the_commands_of_setup_cfg(self):
        ours = setup_cfg_entry_points(COMPUTE_GROUP)
        manager = stevedore.ExtensionManager(COMPUTE_GROUP)
        self.assertEqual(
            {name: load(target) for name, target in ours.items()},
            {name: manager[name].plugin for name in ours})

    def test_stevedore_loads_the_plugin_module(self):
        manager = stevedore.ExtensionManager('openstack.cli.extension')
        self.assertIs(plugin, manager['qga_ext'].plugin)


@testtools.skipUnless(installed(), 'the nova-qga-ext distribution is not '
                      'installed, so openstack cannot find its commands')
class TestOpenStackShell(testtools.TestCase):
    """``openstack`` itself, with the HTTP layer faked by requests-mock."""

    endpoint = 'http://nova.test/v2.1'

    def setUp(self):
        super().setUp()
        # openstack configures the root logger; keep that to this test.
        root = logging.getLogger()
        self.addCleanup(setattr, root, 'handlers', root.handlers[:])
        self.addCleanup(root.setLevel, root.level)
        self.logs = self.useFixture(fixtures.FakeLogger(level=logging.DEBUG))
        for name in [n for n in os.environ if n.startswith('OS_')]:
            self.useFixture(fixtures.EnvironmentVariable(name))
        self.http = self.useFixture(requests_fixture.Fixture())
        version = {'version': {
            'id': 'v2.1', 'status': 'CURRENT', 'min_version': '2.1',
            'version': '2.100',
            'links': [{'rel': 'self', 'href': self.endpoint + '/'}]}}
        self.http.get(self.endpoint, json=version)
        self.http.get(self.endpoint + '/', json=version)
        self.http.get(self.endpoint + '/servers/web1', status_code=404,
                      json={'itemNotFound': {'code': 404, 'message': 'no'}})
        self.http.get(self.endpoint + '/servers/detail?name=web1',
                      json={'servers': [{'id': fakes.SERVER_ID,
                                         'name': 'web1'}]})
        self.http.get(self.endpoint + '/servers/' + fakes.SERVER_ID,
                      json={'server': {'id': fakes.SERVER_ID,
                                       'name': 'web1'}})
        self.exec_reply = {'json': {'guestExec': {
            'pid': 42, 'exited': True, 'exitcode': 3, 'signal': None,
            'stdout': base64.b64encode(b'\xffout').decode(),
            'stderr': base64.b64encode(b'err').decode(),
            'stdout_truncated': False, 'stderr_truncated': False}}}
        self.action = self.http.post(
            '%s/servers/%s/action' % (self.endpoint, fakes.SERVER_ID),
            **self.exec_reply)

    @staticmethod
    def forget_clients():
        # OSC caches each API's client on the ClientManager class, i.e. per
        # process; every in-process run must build its own.
        for attr in vars(clientmanager.ClientManager).values():
            if isinstance(attr, clientmanager.ClientCache):
                attr._handle = None

    def openstack(self, *argv, stdin=b''):
        from openstackclient import shell
        self.forget_clients()
        self.addCleanup(self.forget_clients)
        streams = {name: fakes.binary_stream(stdin if name == 'stdin'
                                             else b'')
                   for name in ('stdin', 'stdout', 'stderr')}
        for name, stream in streams.items():
            self.useFixture(fixtures.MonkeyPatch('sys.' + name, stream))
        status = shell.main(['--os-auth-type', 'none', '--os-endpoint',
                             self.endpoint, *argv])
        return (status, fakes.written(streams['stdout']),
                fakes.written(streams['stderr']))

    def sent(self):
        request = self.action.last_request
        return (request.json(),
                request.headers.get('OpenStack-API-Version'))

    def test_exec(self):
        status, out, err = self.openstack(
            'server', 'exec', 'web1', '--', 'grep', '--', '-v', 'x')
        self.assertEqual((3, b'\xffout', b'err'), (status, out, err))
        self.assertEqual(
            {'guestExec': {'command': ['grep', '--', '-v', 'x'],
                           'wait': True}}, self.sent()[0])

    def test_compute_api_version_is_the_microversion(self):
        self.openstack('--os-compute-api-version', '2.95',
                       'server', 'exec', 'web1', '--', 'true')
        self.assertEqual('compute 2.95', self.sent()[1])

    def test_exec_status(self):
        self.action = self.http.post(
            '%s/servers/%s/action' % (self.endpoint, fakes.SERVER_ID),
            json={'guestExecStatus': self.exec_reply['json']['guestExec']})
        status, _out, _err = self.openstack(
            'server', 'exec', 'status', 'web1', '42')
        self.assertEqual(3, status)
        self.assertEqual({'guestExecStatus': {'pid': 42}}, self.sent()[0])

    def test_api_error_is_one_line_and_non_zero(self):
        self.http.post(
            '%s/servers/%s/action' % (self.endpoint, fakes.SERVER_ID),
            status_code=409, json={'conflictingRequest': {
                'code': 409, 'message': 'Instance is locked'}},
            headers={'Content-Type': 'application/json'})
        status, out, err = self.openstack(
            'server', 'user', 'password', 'set', 'web1', 'alice',
            '--password-stdin', stdin=b'pw\n')
        self.assertEqual(1, status)
        self.assertEqual(b'', out)
        self.assertEqual(
            b'changePassword on server %s failed: Instance is locked '
            b'(HTTP 409)\n' % fakes.SERVER_ID.encode(), err)

    def test_debug_output_keeps_secrets_out(self):
        # Other tests in this process may have quietened keystoneauth.
        keystoneauth = logging.getLogger('keystoneauth')
        self.addCleanup(keystoneauth.setLevel, keystoneauth.level)
        keystoneauth.setLevel(logging.DEBUG)
        secret = 'Tr0ub4dor&3'
        self.useFixture(fixtures.EnvironmentVariable('QGA_T_TOKEN', secret))
        password_set = ['server', 'user', 'password', 'set', 'web1', 'alice']
        accepted = {'status_code': 202}
        for argv, stdin, reply in (
                (password_set + ['--password', secret], b'', accepted),
                (password_set + ['--password-stdin'], secret.encode(),
                 accepted),
                (['server', 'exec', 'web1', '--env', 'QGA_T_TOKEN',
                  '--stdin', '--', 'sh'], secret.encode(), self.exec_reply)):
            self.http.post('%s/servers/%s/action' % (
                self.endpoint, fakes.SERVER_ID), **reply)
            status, out, err = self.openstack('--debug', *argv, stdin=stdin)
            self.assertIn(status, (0, 3))
            # keystoneauth did log the run's other requests.
            self.assertIn(b'REQ: curl', err)
            self.assertNotIn(secret.encode(), out + err)
            self.assertNotIn(secret, self.logs.output)
        sent = [request.json() for request in self.http.request_history
                if request.method == 'POST']
        self.assertEqual([secret, secret],
                         [body['changePassword']['adminPass']
                          for body in sent[:2]])
        self.assertEqual(['QGA_T_TOKEN=' + secret],
                         sent[2]['guestExec']['env'])
        self.assertEqual(base64.b64encode(secret.encode()).decode(),
                         sent[2]['guestExec']['input'])

    def test_help_names_the_plugin(self):
        status, out, _err = self.openstack('help', 'server', 'exec')
        self.assertEqual(0, status)
        self.assertIn(b'provided by the nova-qga-ext plugin', out)
