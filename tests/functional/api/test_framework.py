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

"""The framework through nova's real API, independent of any one feature.

The tests drive a test-only extension, ``probe``: an admin-only action
``qgaExtProbe`` that pings the guest agent on the compute host through the
plugin's RPC, so they exercise the filter, controller, RPC, driver and agent
layers exactly as a feature does, without depending on a feature's rules.
"""

import json

from nova.api.openstack import wsgi
from nova.policies import base as nova_policies
from oslo_policy import policy
import webob

from nova_qga_ext.api import controller
from nova_qga_ext.extensions import base as extension_base
from nova_qga_ext.extensions import manager
from nova_qga_ext.lab import cloud as lab_cloud
from nova_qga_ext import policies
from nova_qga_ext import rpc
from nova_qga_ext.virt import driver as virt_driver
from tests.functional.api import base

PROBE_RULE = policies.RULE_PREFIX + 'probe'

PROBE_SCHEMA = {
    'type': 'object',
    'properties': {
        'qgaExtProbe': {
            'type': 'object',
            'properties': {'token': {'type': 'string'}},
            'additionalProperties': False,
        },
    },
    'required': ['qgaExtProbe'],
    'additionalProperties': False,
}


def probe_secrets(body):
    arguments = body.get('qgaExtProbe') if isinstance(body, dict) else None
    token = arguments.get('token') if isinstance(arguments, dict) else None
    return [token] if token else []


class ProbeController(controller.ActionController):

    @wsgi.expected_errors((400, 404, 409, 504))
    @wsgi.action('qgaExtProbe')
    @controller.secret_schema(PROBE_SCHEMA, secrets=probe_secrets)
    def probe(self, req, id, body):
        context = req.environ['nova.context']
        instance = self.get_instance(context, id, PROBE_RULE)
        self.check_ready(instance)
        self.require_on_host(context, instance)
        return {'qgaExtProbe': self.call_compute(context, instance,
                                                 'qga_ext_probe')}


class ProbeEndpoint:
    target = rpc.TARGET

    def __init__(self, driver):
        self._driver = driver

    def qga_ext_probe(self, context, instance):
        with self._driver.instance_lock(instance), \
                virt_driver.agent_errors_as_nova_exceptions():
            self._driver.guest_agent(instance).ping()
        return {'host': self._driver.virtapi._compute.host}


class Probe(extension_base.Extension):
    name = 'probe'
    POLICY_RULES = [policy.DocumentedRuleDefault(
        name=PROBE_RULE, check_str=nova_policies.ADMIN,
        description='Ping the guest agent (tests only).',
        operations=[{'method': 'POST',
                     'path': '/servers/{server_id}/action (qgaExtProbe)'}],
        scope_types=['project'])]
    API_CONTROLLER = ProbeController

    def rpc_endpoint(self, driver):
        return ProbeEndpoint(driver)


PROBE = {'qgaExtProbe': {}}


class FrameworkTestBase(base.QgaExtAPITestBase):
    EXTRA_EXTENSIONS = {'probe': Probe}

    def setUp(self):
        super().setUp()
        self.admin = self.api_as('admin')

    def probe(self, server, **kwargs):
        kwargs.setdefault('api', self.admin)
        return self.action(server['id'], PROBE, **kwargs)

    def assertConflictNaming(self, response, *words):
        self.assertEqual(409, response.status, response.body)
        message = response.body['conflictingRequest']['message']
        for word in words:
            self.assertIn(word, message)


class TestPipelines(FrameworkTestBase):

    def setUp(self):
        super().setUp()
        self.server = self.create_active_server()

    def test_claimed_action_on_both_pipelines(self):
        for version in ('v2.1', 'v2'):
            for in_url in (False, True):
                response = self.probe(self.server, version=version,
                                      project_id_in_url=in_url)
                self.assertEqual(200, response.status,
                                 (version, in_url, response.body))
                self.assertEqual({'qgaExtProbe': {'host': 'compute1'}},
                                 response.body)
        self.assertEqual(['guest-ping'] * 4,
                         self.fake_agent(self.server).commands)

    def test_claimed_action_gets_nova_headers(self):
        response = self.probe(self.server, microversion='2.74')
        self.assertEqual(200, response.status)
        self.assertTrue(
            response.headers['x-openstack-request-id'].startswith('req-'))
        self.assertEqual('compute 2.74',
                         response.headers['openstack-api-version'])

    def test_claimed_action_validated_by_schema(self):
        response = self.action(self.server['id'],
                               {'qgaExtProbe': {'bogus': 1}}, api=self.admin)
        self.assertEqual(400, response.status)
        self.assertIn('bogus', response.body['badRequest']['message'])

    def _requests(self):
        server_url = '/v2.1/servers/%s' % self.server['id']
        action = server_url + '/action'
        yield webob.Request.blank('/v2.1/servers/detail')
        yield webob.Request.blank(server_url)
        for body in (b'{"fooBar": {}}', b'not json', b'[1, 2]',
                     b'{"qgaExtProbe": {}, "reboot": {"type": "SOFT"}}',
                     b'{"changePassword": {"adminPass": "x", "extra": 1}}',
                     b''):
            yield webob.Request.blank(action, method='POST', body=body)
            yield webob.Request.blank('/v2' + action[len('/v2.1'):],
                                      method='POST', body=body)

    def test_unclaimed_requests_answered_as_without_filter(self):
        with_filter = self.load_wsgi_app(self.paste_config)
        without = self.load_wsgi_app(lab_cloud.stock_paste_config())
        for request in self._requests():
            request.content_type = 'application/json'
            request.headers.update({
                'X-Auth-User': 'admin', 'X-Auth-Project-Id':
                self.api.project_id, 'X-Roles': 'reader,member,admin'})
            ours = request.copy().get_response(with_filter)
            theirs = request.copy().get_response(without)
            label = '%s %s %r' % (request.method, request.path,
                                  request.body)
            self.assertEqual(theirs.status, ours.status, label)
            self.assertEqual(theirs.body, ours.body, label)
            self.assertEqual(self._headers(theirs), self._headers(ours),
                             label)

    @staticmethod
    def _headers(response):
        return {name.lower(): value for name, value in response.headerlist
                if 'request-id' not in name.lower()}

    def test_probe_unknown_to_nova_without_filter(self):
        # The reference point of the comparison above: the stock pipeline
        # does not know the claimed action at all.
        request = webob.Request.blank(
            '/v2.1/servers/%s/action' % self.server['id'], method='POST',
            body=json.dumps(PROBE).encode(), content_type='application/json',
            headers={'X-Auth-User': 'admin',
                     'X-Auth-Project-Id': self.api.project_id,
                     'X-Roles': 'reader,member,admin'})
        response = request.get_response(
            self.load_wsgi_app(lab_cloud.stock_paste_config()))
        self.assertEqual(400, response.status_int)
        self.assertIn(b'There is no such action: qgaExtProbe', response.body)


class TestUnclaimedBodies(FrameworkTestBase):

    def setUp(self):
        super().setUp()
        self.server = self.create_active_server()

    def test_change_password_without_user_name_is_novas(self):
        for version in ('v2.1', 'v2'):
            response = self.action(
                self.server['id'], {'changePassword': {'adminPass': version}},
                version=version)
            self.assertEqual(202, response.status, response.body)
            self.assertEqual((version, False),
                             self.fake_agent(self.server).passwords['root'])
        self.assertIn(('compute_set_admin_password', 'Success'),
                      self.server_events(self.server, 'changePassword'))
        self.assertIsNone(self.server_task_state(self.server))

    def test_change_password_stock_schema_still_applies(self):
        response = self.action(self.server['id'],
                               {'changePassword': {'adminPass': 1}})
        self.assertEqual(400, response.status)
        self.assertEqual({}, self.fake_agent(self.server).passwords)

    def test_unknown_action_is_novas_400(self):
        response = self.action(self.server['id'], {'fooBar': {}})
        self.assertEqual(400, response.status)
        self.assertEqual('There is no such action: fooBar',
                         response.body['badRequest']['message'])


class TestExtensionDisabled(FrameworkTestBase):
    """An installed extension that is not enabled is not reachable."""

    QGA_EXTENSIONS = []

    def test_action_of_disabled_extension_is_unknown_to_nova(self):
        server = self.create_active_server()
        response = self.probe(server)
        self.assertEqual(400, response.status)
        self.assertEqual('There is no such action: qgaExtProbe',
                         response.body['badRequest']['message'])
        self.assertEqual([], self.fake_agent(server).commands)


class TestComputeHosts(FrameworkTestBase):

    def test_routed_to_the_instance_host(self):
        self.start_qga_compute('compute2')
        servers = {host: self.create_active_server(host=host)
                   for host in ('compute1', 'compute2')}
        for host, server in servers.items():
            self.assertEqual(host, server['OS-EXT-SRV-ATTR:host'])
            response = self.probe(server)
            self.assertEqual(200, response.status, response.body)
            self.assertEqual(host, response.body['qgaExtProbe']['host'])
            self.assertEqual(['guest-ping'],
                             self.fake_agent(server).commands)

    def test_host_without_plugin(self):
        self.start_qga_compute('compute2', plugin=False)
        server = self.create_active_server(host='compute2')
        response = self.probe(server)
        self.assertConflictNaming(response, 'compute2', 'probe',
                                  'qga_ext.LibvirtDriver')
        self.assertIsNone(self.server_task_state(server))
        self.assertEqual('ACTIVE', self.admin.get_server(
            server['id'])['status'])
        self.assertEqual([], self.fake_agent(server).commands)

    def test_host_with_plugin_but_extension_disabled(self):
        self.flags(extensions=[], group='qga_ext')
        self.start_qga_compute('compute2')
        server = self.create_active_server(host='compute2')
        self.assertConflictNaming(self.probe(server), 'compute2', 'probe')

    def test_change_password_with_user_on_host_without_plugin(self):
        if 'user_password' not in manager.installed():
            self.skipTest('the user_password extension is not installed')
        self.start_qga_compute('compute2', plugin=False)
        server = self.create_active_server(host='compute2')
        for version in ('v2.1', 'v2'):
            response = self.action(
                server['id'], {'changePassword': {'adminPass': 'x',
                                                  'userName': 'alice'}},
                version=version)
            self.assertConflictNaming(response, 'compute2')
            self.assertIsNone(self.server_task_state(server))
        self.assertEqual({}, self.fake_agent(server).passwords)


class TestServerChecks(FrameworkTestBase):

    def test_unknown_server(self):
        response = self.action('9c0b7a7c-3f8e-4a53-9c44-2e3d3f1d6a10', PROBE,
                               api=self.admin)
        self.assertEqual(404, response.status)
        self.assertIn('9c0b7a7c-3f8e-4a53-9c44-2e3d3f1d6a10',
                      response.body['itemNotFound']['message'])

    def test_locked_server(self):
        server = self.create_active_server()
        self.admin.post_server_action(server['id'], {'lock': {}})
        self.assertConflictNaming(self.probe(server), 'locked')
        self.assertEqual([], self.fake_agent(server).commands)

    def test_stopped_server(self):
        server = self.create_active_server()
        self.admin.post_server_action(server['id'], {'os-stop': None})
        self._wait_for_state_change(server, 'SHUTOFF')
        self.assertConflictNaming(self.probe(server), 'stopped', 'ACTIVE')

    def test_task_in_progress(self):
        server = self.create_active_server()
        instance = self.instance(server)
        instance.task_state = 'rebooting'
        instance.save()
        self.assertConflictNaming(self.probe(server), 'rebooting')
        self.assertEqual('rebooting', self.server_task_state(server))


class TestAgentFailures(FrameworkTestBase):
    """Agent errors travel from the compute host as documented statuses."""

    def test_agent_not_configured(self):
        server = self.create_active_server(agent=False)
        self.assertConflictNaming(self.probe(server), 'hw_qemu_guest_agent')

    def test_agent_not_connected(self):
        server = self.create_active_server()
        self.fake_agent(server).connected = False
        self.assertConflictNaming(self.probe(server), 'not connected')

    def test_agent_timeout(self):
        server = self.create_active_server()
        self.fake_agent(server).hung = True
        response = self.probe(server)
        self.assertEqual(504, response.status, response.body)
        self.assertIn('guest-ping',
                      response.body['computeFault']['message'])

    def test_command_disabled(self):
        server = self.create_active_server()
        self.fake_agent(server).disable('guest-ping')
        self.assertConflictNaming(self.probe(server), 'guest-ping',
                                  'disabled')


class TestPolicy(FrameworkTestBase):

    def setUp(self):
        super().setUp()
        self.server = self.create_active_server()

    def test_admin_only_rule(self):
        self.assertEqual(200, self.probe(self.server).status)
        for role in ('member', 'reader', 'other'):
            response = self.probe(self.server, api=self.api_as(role))
            self.assertEqual(403, response.status, role)
            self.assertIn(PROBE_RULE, response.body['forbidden']['message'])
        self.assertEqual(['guest-ping'],
                         self.fake_agent(self.server).commands)

    def test_other_project_cannot_see_the_server(self):
        response = self.probe(self.server, api=self.api_as(
            'member', project_id=self.other_project_id))
        self.assertEqual(404, response.status)

    def test_operator_override_in_policy_file(self):
        self.policy.set_rules({PROBE_RULE: 'role:member'}, overwrite=False)
        response = self.probe(self.server, api=self.api_as('member'))
        self.assertEqual(200, response.status, response.body)

    def test_guest_exec_rule_is_admin_only(self):
        if 'guest_exec' not in manager.installed():
            self.skipTest('the guest_exec extension is not installed')
        body = {'guestExec': {'command': ['true']}}
        response = self.action(self.server['id'], body)
        self.assertEqual(403, response.status, response.body)
        self.assertIn('os_compute_api:qga-ext:guest-exec',
                      response.body['forbidden']['message'])


class TestLogging(FrameworkTestBase):

    def test_claimed_body_never_logged(self):
        server = self.create_active_server()
        logs = self.capture_debug_logs()
        response = self.action(
            server['id'], {'qgaExtProbe': {'token': 'TOKEN-6f1c2e'}},
            api=self.admin)
        self.assertEqual(200, response.status)
        self.assertIn('qgaExtProbe', logs.output)
        self.assertNotIn('TOKEN-6f1c2e', logs.output)

    def test_secret_masked_in_validation_error(self):
        server = self.create_active_server()
        logs = self.capture_debug_logs()
        response = self.action(
            server['id'], {'qgaExtProbe': {'token': 'TOKEN-6f1c2e', 'x': 1}},
            api=self.admin)
        self.assertEqual(400, response.status)
        message = response.body['badRequest']['message']
        self.assertIn("'x' was unexpected", message)
        self.assertNotIn('TOKEN-6f1c2e', message)
        self.assertNotIn('TOKEN-6f1c2e', logs.output)
