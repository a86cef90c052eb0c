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

import types

from openstack import exceptions as sdk_exceptions
from osc_lib import exceptions
import testtools

from nova_qga_ext.osc import client
from nova_qga_ext.osc import plugin
from tests.unit.osc import fakes


class TestServerActions(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.compute = fakes.FakeCompute()
        self.server = self.compute.servers[0]

    def act(self, api_version, reply, **kwargs):
        self.compute.replies.append(reply)
        actions = client.ServerActions(self.compute, api_version)
        return actions.act(self.server, 'guestExecStatus', {'pid': 1},
                           **kwargs)

    def test_microversions_are_passed_on(self):
        for version in ('2.1', '2.95', 'latest'):
            self.act(version, fakes.response(202))
            _url, kwargs = self.compute.posts.pop()
            self.assertEqual(version, kwargs['microversion'])

    def test_bare_major_version_selects_no_microversion(self):
        self.act('2', fakes.response(202))
        (_url, kwargs), = self.compute.posts
        self.assertNotIn('microversion', kwargs)

    def test_reply_json_or_nothing(self):
        self.assertEqual({'image_id': 'i'},
                         self.act('2.1', fakes.response(202,
                                                        {'image_id': 'i'})))
        self.assertEqual({}, self.act('2.1', fakes.response(202)))

    def test_secret_bodies_are_not_logged(self):
        self.act('2.1', fakes.response(202), secret=True)
        (_url, kwargs), = self.compute.posts
        self.assertIs(False, kwargs['log'])

    def test_errors_without_json_use_the_reason(self):
        exc = self.assertRaises(exceptions.CommandError, self.act, '2.1',
                                fakes.response(504))
        self.assertEqual('guestExecStatus on server %s failed: Gateway '
                         'Timeout (HTTP 504)' % fakes.SERVER_ID, str(exc))

    def test_command_error_of_a_non_http_sdk_error(self):
        exc = client.command_error(
            sdk_exceptions.DuplicateResource(
                'More than one Server exists with the name web1'),
            'Looking up server web1')
        self.assertEqual('Looking up server web1 failed: More than one '
                         'Server exists with the name web1', str(exc))


class TestPlugin(testtools.TestCase):

    def test_make_client_uses_the_sdk_compute_proxy(self):
        compute = fakes.FakeCompute()
        instance = types.SimpleNamespace(
            sdk_connection=types.SimpleNamespace(compute=compute),
            _api_version={'compute': '2.90', plugin.API_NAME: '2.90'})
        actions = plugin.make_client(instance)
        self.assertIs(compute, actions.compute)
        self.assertEqual('2.90', actions.microversion)

    def test_follows_the_compute_api_version_option(self):
        # OSC reads the plugin's version from this option; sharing the
        # compute option keeps the plugin's requests on the user's
        # --os-compute-api-version.
        self.assertEqual('os_compute_api_version', plugin.API_VERSION_OPTION)
        parser = object()
        self.assertIs(parser, plugin.build_option_parser(parser))
        self.assertTrue(plugin.check_api_version('2.42'))
