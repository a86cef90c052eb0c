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

"""The paste filter: what it claims, and that it leaves the rest alone."""

import io
import json

import fixtures
from nova.api.openstack import wsgi
from nova import context as nova_context
from nova import test
from oslo_config import cfg
import webob

from nova_qga_ext.api import filter as api_filter
from nova_qga_ext import conf as qga_conf
from nova_qga_ext.extensions import base
from nova_qga_ext.extensions import manager

SERVER = '3f1c5a8e-2b7d-4c1e-9a0f-6d5e4c3b2a19'
PROJECT = '6f70656e737461636b20342065766572'


class EchoController(wsgi.Controller):
    """Answers the actions it is routed, with what nova's Resource parsed."""

    def __init__(self, extension):
        super().__init__()
        self.extension = extension

    @wsgi.action('echoAction')
    def echo(self, req, id, body):
        return {'controller': self.extension.name, 'id': id, 'body': body}

    @wsgi.action('changePassword')
    def change_password(self, req, id, body):
        return {'controller': self.extension.name, 'id': id, 'body': body}


class EchoExtension(base.Extension):
    """Claims echoAction, and changePassword only with a userName."""

    name = 'echo'
    API_CONTROLLER = EchoController

    def claims(self, action, body):
        if action == 'changePassword':
            return isinstance(body, dict) and 'userName' in body
        return super().claims(action, body)


class PassiveExtension(base.Extension):
    """An extension without API actions."""

    name = 'passive'


class RecordingInput(io.BytesIO):
    """A wsgi.input that counts the reads of it."""

    reads = 0

    def read(self, *args):
        self.reads += 1
        return super().read(*args)


class TestServerActionFilter(test.NoDBTestCase):

    def setUp(self):
        super().setUp()
        self.downstream = []
        self.filter = api_filter.ServerActionFilter(
            self._nova, [PassiveExtension(cfg.CONF), EchoExtension(cfg.CONF)])

    def _nova(self, environ, start_response):
        """Stands for nova's app; records what it was given."""
        self.downstream.append({
            'environ': dict(environ),
            'body': environ['wsgi.input'].read(
                int(environ.get('CONTENT_LENGTH') or 0)),
        })
        start_response('299 Nova', [('Content-Type', 'text/plain')])
        return [b'from nova']

    def _request(self, path, body=None, method='POST'):
        request = webob.Request.blank(path, method=method)
        if body is not None:
            if not isinstance(body, bytes):
                body = json.dumps(body).encode()
            request.body = body
            request.content_type = 'application/json'
        request.environ['nova.context'] = nova_context.RequestContext(
            'user', PROJECT)
        return request

    def assertPassedThrough(self, request):
        sent_body = request.body
        sent_environ = dict(request.environ)
        response = request.get_response(self.filter)
        self.assertEqual('299 Nova', response.status)
        self.assertEqual(b'from nova', response.body)
        self.assertEqual(1, len(self.downstream))
        received = self.downstream[0]
        self.assertEqual(sent_body, received['body'])
        self.assertNotIn('wsgiorg.routing_args', received['environ'])
        for key in ('PATH_INFO', 'SCRIPT_NAME', 'REQUEST_METHOD',
                    'CONTENT_LENGTH', 'CONTENT_TYPE', 'QUERY_STRING'):
            self.assertEqual(sent_environ.get(key),
                             received['environ'].get(key), key)

    def assertClaimed(self, request, expected_body):
        response = request.get_response(self.filter)
        self.assertEqual([], self.downstream)
        self.assertEqual(200, response.status_int, response.body)
        self.assertEqual({'controller': 'echo', 'id': SERVER,
                          'body': expected_body}, response.json)
        return response

    def test_claimed_action(self):
        body = {'echoAction': {'a': 1}}
        self.assertClaimed(
            self._request('/servers/%s/action' % SERVER, body), body)

    def test_claimed_action_with_project_id(self):
        body = {'echoAction': {}}
        self.assertClaimed(self._request(
            '/%s/servers/%s/action' % (PROJECT, SERVER), body), body)

    def test_project_id_checked_by_nova(self):
        # The project id of the URL goes to nova's Resource, which refuses
        # one that is not the caller's.
        response = self._request(
            '/other/servers/%s/action' % SERVER,
            {'echoAction': {}}).get_response(self.filter)
        self.assertEqual(400, response.status_int)
        self.assertIn(b"project_id 'other'", response.body)

    def test_claimed_response_carries_version_headers(self):
        response = self.assertClaimed(
            self._request('/servers/%s/action' % SERVER, {'echoAction': {}}),
            {'echoAction': {}})
        self.assertEqual('compute 2.1',
                         response.headers['OpenStack-API-Version'])

    def test_narrowed_claim(self):
        body = {'changePassword': {'adminPass': 'x', 'userName': 'alice'}}
        self.assertClaimed(
            self._request('/servers/%s/action' % SERVER, body), body)

    def test_narrowed_claim_passes_the_rest(self):
        for arguments in ({'adminPass': 'x'}, 'userName', ['userName'], None):
            self.downstream = []
            self.assertPassedThrough(self._request(
                '/servers/%s/action' % SERVER,
                {'changePassword': arguments}))

    def test_unknown_action_passes(self):
        self.assertPassedThrough(self._request(
            '/servers/%s/action' % SERVER, {'reboot': {'type': 'HARD'}}))

    def test_bodies_that_are_not_one_action_pass(self):
        for body in (b'not json', b'\xff\xfe\x00garbage', b'[1]', b'"x"',
                     b'{}', b'{"echoAction": {}, "reboot": {}}', b'',
                     b'{"echoAction": '):
            self.downstream = []
            self.assertPassedThrough(
                self._request('/servers/%s/action' % SERVER, body))

    def test_other_paths_pass(self):
        for path in ('/servers', '/servers/%s' % SERVER,
                     '/servers/%s/actions' % SERVER,
                     '/servers/%s/action/x' % SERVER,
                     '/a/b/servers/%s/action' % SERVER,
                     '/os-hypervisors/%s/action' % SERVER):
            self.downstream = []
            self.assertPassedThrough(self._request(path, {'echoAction': {}}))

    def test_other_methods_pass_without_reading_the_body(self):
        for method in ('GET', 'PUT', 'DELETE', 'PATCH', 'HEAD'):
            self.downstream = []
            request = self._request('/servers/%s/action' % SERVER,
                                    {'echoAction': {}}, method=method)
            stream = RecordingInput(request.body)
            request.environ['wsgi.input'] = stream
            self.filter(request.environ, lambda status, headers: None)
            self.assertEqual(1, stream.reads, method)  # nova's read only

    def test_query_string_kept(self):
        request = self._request('/servers/%s/action?x=1' % SERVER,
                                {'reboot': {}})
        self.assertPassedThrough(request)

    def test_no_extension_with_actions(self):
        self.filter = api_filter.ServerActionFilter(
            self._nova, [PassiveExtension(cfg.CONF)])
        self.assertPassedThrough(self._request(
            '/servers/%s/action' % SERVER, {'echoAction': {}}))


class TestFilterFactory(test.NoDBTestCase):

    def setUp(self):
        super().setUp()
        qga_conf.register_opts(cfg.CONF)
        self.useFixture(fixtures.MockPatchObject(
            manager, 'installed', return_value={
                'echo': EchoExtension, 'passive': PassiveExtension}))

    def test_loads_enabled_extensions(self):
        self.flags(extensions=['passive', 'echo'], group='qga_ext')
        app = api_filter.filter_factory({})(self._app)
        self.assertIsInstance(app, api_filter.ServerActionFilter)
        self.assertIs(self._app, app.application)
        self.assertEqual(['echo'], [ext.name for ext in app._claimants])

    def test_unknown_extension_stops_the_api(self):
        self.flags(extensions=['echo', 'nope'], group='qga_ext')
        self.assertRaises(manager.UnknownExtension,
                          api_filter.filter_factory, {})

    @staticmethod
    def _app(environ, start_response):
        return []
