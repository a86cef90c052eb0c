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

"""The RPC client of nova-api: routing, timeouts and failure mapping."""

from unittest import mock

import fixtures
from nova import context as nova_context
from nova import exception as nova_exception
from nova import objects
from nova.objects import base as objects_base
from nova import test
import oslo_messaging as messaging

from nova_qga_ext import rpc


class TestComputeAPI(test.NoDBTestCase):

    def setUp(self):
        super().setUp()
        self.client = mock.Mock()
        self.get_client = self.useFixture(fixtures.MockPatch(
            'nova.rpc.get_client', return_value=self.client)).mock
        self.cctxt = self.client.prepare.return_value
        self.api = rpc.ComputeAPI()
        self.context = nova_context.RequestContext('user', 'project')
        self.instance = objects.Instance(uuid='0e3c9b6c-2b61-4d0c-9a4f-'
                                              '1d2e3f4a5b6c', host='cn1')

    def test_target(self):
        target, = self.get_client.call_args.args
        self.assertEqual('compute', target.topic)
        self.assertEqual('nova_qga_ext', target.namespace)
        self.assertEqual('1.0', target.version)
        self.assertIsInstance(self.get_client.call_args.kwargs['serializer'],
                              objects_base.NovaObjectSerializer)
        # The compute side serves what the client sends.
        self.assertEqual(rpc.TARGET.namespace, target.namespace)
        self.assertEqual(rpc.TARGET.version, target.version)

    def test_call_routes_to_the_instance_host(self):
        self.cctxt.call.return_value = {'ok': 1}
        result = self.api.call(self.context, self.instance, 'do_it', 'ext',
                               arg=5)
        self.assertEqual({'ok': 1}, result)
        self.client.prepare.assert_called_once_with(
            server='cn1', timeout=60, call_monitor_timeout=60)
        self.cctxt.call.assert_called_once_with(
            self.context, 'do_it', instance=self.instance, arg=5)

    def test_long_call_is_kept_alive_by_heartbeats(self):
        self.flags(rpc_response_timeout=30)
        self.api.call(self.context, self.instance, 'do_it', 'ext',
                      rpc_timeout=600)
        self.client.prepare.assert_called_once_with(
            server='cn1', timeout=600, call_monitor_timeout=30)

    def test_short_call(self):
        self.api.call(self.context, self.instance, 'do_it', 'ext',
                      rpc_timeout=5)
        self.client.prepare.assert_called_once_with(
            server='cn1', timeout=5, call_monitor_timeout=5)

    def test_method_timeout_argument_is_the_methods(self):
        # guest_exec has its own timeout argument; it goes to the compute
        # side, apart from the RPC timeout.
        self.api.call(self.context, self.instance, 'guest_exec', 'ext',
                      rpc_timeout=90, timeout=30)
        self.client.prepare.assert_called_once_with(
            server='cn1', timeout=90, call_monitor_timeout=60)
        self.cctxt.call.assert_called_once_with(
            self.context, 'guest_exec', instance=self.instance, timeout=30)

    def test_cell_transport(self):
        # nova-api targets the context at the instance's cell; the call
        # goes through that cell's message queue.
        self.context.mq_connection = mock.sentinel.cell_transport
        with mock.patch.object(messaging, 'get_rpc_client') as get_client:
            self.api.call(self.context, self.instance, 'do_it', 'ext')
        transport, target = get_client.call_args.args
        self.assertIs(mock.sentinel.cell_transport, transport)
        self.assertIs(self.client.target, target)
        cell_client = get_client.return_value
        cell_client.prepare.assert_called_once_with(
            server='cn1', timeout=60, call_monitor_timeout=60)
        self.client.prepare.assert_not_called()

    def assertNotOnHost(self, error):
        self.cctxt.call.side_effect = error
        raised = self.assertRaises(
            rpc.ExtensionNotOnHost, self.api.call, self.context,
            self.instance, 'do_it', 'guest_exec')
        self.assertEqual(409, raised.code)
        message = raised.format_message()
        for word in ('cn1', 'guest_exec', 'qga_ext.LibvirtDriver',
                     '[qga_ext] extensions'):
            self.assertIn(word, message)
        self.assertIsInstance(raised, nova_exception.Invalid)

    def test_unsupported_version(self):
        self.assertNotOnHost(messaging.UnsupportedVersion('1.0'))

    def test_no_such_method(self):
        self.assertNotOnHost(messaging.NoSuchMethod('do_it'))

    def test_remote_unsupported_version(self):
        # As the compute host's dispatcher reports it through the reply.
        self.assertNotOnHost(messaging.RemoteError(
            'UnsupportedVersion', 'Endpoint does not support RPC version '
            '1.0', ''))

    def test_remote_no_such_method(self):
        self.assertNotOnHost(messaging.RemoteError(
            'NoSuchMethod', 'Endpoint does not support RPC method do_it',
            ''))

    def test_other_remote_error_kept(self):
        error = messaging.RemoteError('KeyError', 'x', '')
        self.cctxt.call.side_effect = error
        self.assertIs(error, self.assertRaises(
            messaging.RemoteError, self.api.call, self.context,
            self.instance, 'do_it', 'ext'))

    def test_nova_exception_kept(self):
        error = nova_exception.InstanceAgentNotEnabled(reason='r',
                                                       agent_error='x')
        self.cctxt.call.side_effect = error
        self.assertIs(error, self.assertRaises(
            nova_exception.InstanceAgentNotEnabled, self.api.call,
            self.context, self.instance, 'do_it', 'ext'))

    def test_timeout(self):
        self.cctxt.call.side_effect = messaging.MessagingTimeout()
        raised = self.assertRaises(
            rpc.ComputeHostTimeout, self.api.call, self.context,
            self.instance, 'do_it', 'ext', rpc_timeout=42)
        self.assertEqual(504, raised.code)
        self.assertIn('cn1', raised.format_message())
        self.assertIn('42', raised.format_message())

    def test_require_served(self):
        self.cctxt.call.return_value = {'extensions': ['a', 'ext']}
        self.api.require(self.context, self.instance, 'ext')
        self.cctxt.call.assert_called_once_with(self.context, 'ping')
        self.client.prepare.assert_called_once_with(
            server='cn1', timeout=60, call_monitor_timeout=60)

    def test_require_extension_disabled_on_host(self):
        self.cctxt.call.return_value = {'extensions': ['other']}
        raised = self.assertRaises(rpc.ExtensionNotOnHost, self.api.require,
                                   self.context, self.instance, 'ext')
        self.assertIn('cn1', raised.format_message())

    def test_require_plugin_missing(self):
        self.cctxt.call.side_effect = messaging.UnsupportedVersion('1.0')
        self.assertRaises(rpc.ExtensionNotOnHost, self.api.require,
                          self.context, self.instance, 'ext')


class TestPingEndpoint(test.NoDBTestCase):

    def test_ping(self):
        endpoint = rpc.PingEndpoint(name for name in ('a', 'b'))
        self.assertIs(rpc.TARGET, endpoint.target)
        self.assertEqual({'extensions': ['a', 'b']},
                         endpoint.ping(mock.sentinel.context))
        # A generator is consumed once; every ping answers the same.
        self.assertEqual({'extensions': ['a', 'b']},
                         endpoint.ping(mock.sentinel.context))
