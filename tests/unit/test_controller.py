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

"""The API-side helpers shared by the extensions' controllers."""

import json
import logging

import fixtures
from nova.api.openstack import wsgi
from nova.compute import task_states
from nova.compute import vm_states
from nova import context as nova_context
from nova import exception as nova_exception
from nova import objects
from nova import test
from oslo_utils.fixture import uuidsentinel as uuids
import webob
import webob.exc

from nova_qga_ext.api import controller
from nova_qga_ext import exception
from nova_qga_ext import rpc

SECRET = 'hunter2-7f3a'


class TestToHttpError(test.NoDBTestCase):

    def assertMaps(self, error, status):
        http_error = controller.to_http_error(error)
        self.assertIsNotNone(http_error, error)
        self.assertEqual(status, http_error.code, error)
        self.assertEqual(error.format_message(), http_error.explanation)

    def test_agent_error_tags(self):
        for tag, status in ((exception.NOT_CONFIGURED, 409),
                            (exception.NOT_CONNECTED, 409),
                            (exception.COMMAND_DISABLED, 409),
                            (exception.COMMAND_FAILED, 409),
                            (exception.TIMEOUT, 504),
                            (exception.PID_UNKNOWN, 404)):
            self.assertMaps(nova_exception.InstanceAgentNotEnabled(
                message='agent says %s' % tag, agent_error=tag), status)

    def test_tag_wins_over_the_class(self):
        # A NotFound with the timeout tag is the agent's timeout, not a 404.
        self.assertMaps(nova_exception.NotFound(
            message='x', agent_error=exception.TIMEOUT), 504)

    def test_nova_exceptions(self):
        for error, status in (
                (rpc.ComputeHostTimeout(host='cn1', timeout=30), 504),
                (rpc.ExtensionNotOnHost(host='cn1', feature='f'), 409),
                (nova_exception.InstanceInvalidState(
                    attr='vm_state', instance_uuid='u', state='stopped',
                    method='m'), 409),
                (nova_exception.InstanceAgentNotEnabled(reason='r'), 409),
                (nova_exception.QemuGuestAgentNotEnabled(), 409),
                (nova_exception.InstanceQuiesceFailed(reason='r'), 409),
                (nova_exception.UnexpectedTaskStateError(
                    instance_uuid='u', expected='a', actual='b'), 409),
                (nova_exception.InstanceNotFound(instance_id='u'), 404),
                # A compute node's own configuration refuses the request.
                (nova_exception.Forbidden(message='not allowed here'), 403)):
            self.assertMaps(error, status)

    def test_unknown_nova_exception(self):
        self.assertIsNone(controller.to_http_error(
            nova_exception.NovaException(message='boom')))

    def test_compute_errors_as_http(self):
        def fail(error):
            with controller.compute_errors_as_http():
                raise error

        self.assertRaises(webob.exc.HTTPGatewayTimeout, fail,
                          rpc.ComputeHostTimeout(host='cn1', timeout=3))
        # Unknown errors keep their type for nova's own fault handling.
        unknown = nova_exception.NovaException(message='boom')
        self.assertIs(unknown, self.assertRaises(
            nova_exception.NovaException, fail, unknown))
        self.assertRaises(ValueError, fail, ValueError())


SCHEMA = {
    'type': 'object',
    'properties': {
        'doIt': {
            'type': 'object',
            'properties': {
                'password': {'type': 'string', 'maxLength': 20},
                'user': {'type': 'string', 'pattern': '^[a-z]+$'},
            },
            'required': ['password'],
            'additionalProperties': False,
        },
    },
    'required': ['doIt'],
    'additionalProperties': False,
}


def secrets_of(body):
    arguments = body.get('doIt') if isinstance(body, dict) else None
    if isinstance(arguments, dict) and arguments.get('password'):
        return [arguments['password']]
    return []


class SecretController(wsgi.Controller):

    @wsgi.action('doIt')
    @controller.secret_schema(SCHEMA, secrets=secrets_of)
    def do_it(self, req, id, body):
        return {'done': body['doIt']['user']}


class TestSecretSchema(test.NoDBTestCase):

    def _call(self, body):
        request = webob.Request.blank('/servers/x/action', method='POST')
        request.body = json.dumps(body).encode()
        request.content_type = 'application/json'
        request.environ['wsgiorg.routing_args'] = (
            (), {'action': 'action', 'id': 'x'})
        request.environ['nova.context'] = nova_context.RequestContext(
            'u', 'p')
        resource = wsgi.Resource(None)
        resource.register_subcontroller_actions(SecretController())
        return request.get_response(resource)

    def test_valid_body_reaches_the_method(self):
        response = self._call({'doIt': {'password': SECRET, 'user': 'bob'}})
        self.assertEqual(200, response.status_int)
        self.assertEqual({'done': 'bob'}, response.json)

    def test_secret_masked_in_every_error(self):
        for arguments in (
                {'password': SECRET, 'user': 'Bob!'},
                {'password': SECRET, 'extra': 1},
                {'password': SECRET * 3},
                {'password': SECRET, 'user': 7}):
            response = self._call({'doIt': arguments})
            self.assertEqual(400, response.status_int, arguments)
            message = response.json['badRequest']['message']
            self.assertNotIn(SECRET, message)
            self.assertNotIn(SECRET[:8], message)
            self.assertIn('Invalid input', message)

    def test_error_text_kept_apart_from_the_secret(self):
        response = self._call({'doIt': {'password': SECRET, 'extra': 1}})
        message = response.json['badRequest']['message']
        self.assertIn("'extra' was unexpected", message)
        self.assertIn('***', message)

    def test_non_string_secret_is_not_a_problem(self):
        response = self._call({'doIt': {'password': 5}})
        self.assertEqual(400, response.status_int)


class SpyController(wsgi.Controller):

    def __init__(self):
        super().__init__()
        self.bodies = []

    @wsgi.action('spyAction')
    def spy(self, req, id, body):
        self.bodies.append(body)
        return {}


class TestActionResource(test.NoDBTestCase):

    def setUp(self):
        super().setUp()
        self.spy = SpyController()
        self.resource = controller.ActionResource([self.spy])
        self.logs = self.useFixture(fixtures.FakeLogger(
            level=logging.DEBUG, name='nova.api.openstack.wsgi'))

    def _call(self, body):
        request = webob.Request.blank('/servers/x/action', method='POST')
        request.body = body if isinstance(body, bytes) else json.dumps(
            body).encode()
        request.content_type = 'application/json'
        request.environ['wsgiorg.routing_args'] = (
            (), {'action': 'action', 'id': 'x'})
        request.environ['nova.context'] = nova_context.RequestContext(
            'u', 'p')
        return request.get_response(self.resource)

    def test_body_not_logged_but_delivered(self):
        body = {'spyAction': {'env': ['TOKEN=%s' % SECRET],
                              'input': SECRET, 'nested': {'k': SECRET}}}
        response = self._call(body)
        self.assertEqual(200, response.status_int)
        self.assertEqual([body], self.spy.bodies)
        self.assertIn('spyAction', self.logs.output)
        self.assertNotIn(SECRET, self.logs.output)

    def test_malformed_bodies_not_logged(self):
        for body in (b'{"spyAction": {"x": "%s"' % SECRET.encode(),
                     b'["%s"]' % SECRET.encode()):
            response = self._call(body)
            self.assertEqual(400, response.status_int, body)
        self.assertNotIn(SECRET, self.logs.output)
        self.assertEqual([], self.spy.bodies)

    def test_unknown_action(self):
        response = self._call({'otherAction': {'x': SECRET}})
        self.assertEqual(400, response.status_int)
        self.assertIn(b'There is no such action: otherAction', response.body)
        self.assertNotIn(SECRET, self.logs.output)


class TestCheckReady(test.NoDBTestCase):

    def _instance(self, **kwargs):
        values = {'uuid': uuids.instance, 'vm_state': vm_states.ACTIVE,
                  'locked': False, 'task_state': None}
        values.update(kwargs)
        return objects.Instance(**values)

    def assertConflict(self, instance, *words, **kwargs):
        error = self.assertRaises(webob.exc.HTTPConflict,
                                  controller.ActionController.check_ready,
                                  instance, **kwargs)
        for word in words:
            self.assertIn(word, error.explanation)

    def test_ready(self):
        controller.ActionController.check_ready(self._instance())

    def test_not_active(self):
        self.assertConflict(self._instance(vm_state=vm_states.STOPPED),
                            'stopped', 'ACTIVE')

    def test_locked(self):
        self.assertConflict(self._instance(locked=True), 'locked')

    def test_task(self):
        instance = self._instance(task_state=task_states.REBOOTING)
        self.assertConflict(instance, task_states.REBOOTING)
        controller.ActionController.check_ready(instance, allow_task=True)

    def test_locked_even_with_task_allowed(self):
        self.assertConflict(self._instance(locked=True), 'locked',
                            allow_task=True)
