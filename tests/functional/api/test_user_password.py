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

"""changePassword with userName through nova's real API and compute manager.

The request crosses the real paste pipelines (v2.1 and legacy v2), nova's
API, the plugin's RPC and nova's ``ComputeManager.set_admin_password`` down
to the fake qemu-ga behind fakelibvirt, which records the passwords set.
"""

import json

import fixtures
from nova.compute import task_states
from nova import context as nova_context
from nova import objects
from oslo_utils import uuidutils

from nova_qga_ext.extensions import user_password as up
from nova_qga_ext import rpc
from tests.functional.api import base

PASSWORD = 'Tr0ub4dor&3-secret'
HASH = '$6$saltsalt$' + 'Q' * 86
EVENT = 'compute_set_admin_password'


def change_password(user_name=None, password=PASSWORD, **extra):
    body = {'adminPass': password}
    if user_name is not None:
        body['userName'] = user_name
    body.update(extra)
    return {'changePassword': body}


class UserPasswordAPITest(base.QgaExtAPITestBase):

    def setUp(self):
        super().setUp()
        self.server = self.create_active_server()
        self.agent = self.fake_agent(self.server)
        self.agent.users.add('alice')

    def assertNoSecret(self, text, *secrets):
        for secret in secrets or (PASSWORD, HASH):
            self.assertNotIn(secret, text)

    def assertIdle(self, server=None):
        self.assertIsNone(self.server_task_state(server or self.server))

    def assertNoGuestCall(self, agent=None):
        self.assertNotIn('guest-set-user-password',
                         (agent or self.agent).commands)

    # -- success --------------------------------------------------------

    def test_sets_alices_password_on_v21(self):
        response = self.action(self.server['id'], change_password('alice'))

        self.assertEqual(202, response.status, response.content)
        self.assertEqual(b'', response.content)
        self.assertEqual({'alice': (PASSWORD, False)}, self.agent.passwords)
        self.assertIdle()
        self.assertIn((EVENT, 'Success'),
                      self.server_events(self.server, 'changePassword'))

    def test_legacy_v2_honours_user_name(self):
        # nova alone would drop userName here and change root's password.
        for project_in_url in (False, True):
            self.agent.passwords.clear()
            response = self.action(self.server['id'],
                                   change_password('alice'), version='v2',
                                   project_id_in_url=project_in_url)

            self.assertEqual(202, response.status, response.content)
            self.assertEqual({'alice': (PASSWORD, False)},
                             self.agent.passwords)
        self.assertIdle()

    def test_crypted(self):
        response = self.action(self.server['id'],
                               change_password('alice', HASH, crypted=True))

        self.assertEqual(202, response.status, response.content)
        self.assertEqual({'alice': (HASH, True)}, self.agent.passwords)

    def test_crypted_without_user_name_refused_on_both_apis(self):
        # On legacy v2 nova would drop the flag and make the hash root's
        # clear-text password.
        for version in ('v2.1', 'v2'):
            response = self.action(self.server['id'],
                                   change_password(password=HASH,
                                                   crypted=True),
                                   version=version)
            self.assertEqual(400, response.status, response.content)
            self.assertIn('userName', response.body['badRequest']['message'])
            self.assertNoSecret(response.content.decode())
        self.assertEqual({}, self.agent.passwords)

    def test_without_user_name_nova_sets_roots(self):
        for version in ('v2.1', 'v2'):
            self.agent.passwords.clear()
            response = self.action(self.server['id'], change_password(),
                                   version=version)
            self.assertEqual(202, response.status, response.content)
            self.assertEqual({'root': (PASSWORD, False)},
                             self.agent.passwords)
        self.assertIdle()

    def test_routed_to_the_servers_host(self):
        self.start_qga_compute('compute2')
        server = self.create_active_server(host='compute2')
        agent = self.fake_agent(server)
        agent.users.add('alice')

        response = self.action(server['id'], change_password('alice'))

        self.assertEqual(202, response.status, response.content)
        self.assertEqual({'alice': (PASSWORD, False)}, agent.passwords)
        self.assertEqual({}, self.agent.passwords)
        self.assertEqual('compute2', self.instance(server).host)

    # -- validation -----------------------------------------------------

    def test_bad_user_names_refused_without_echoing_the_password(self):
        for name in ('al:ice', 'alice\n', 'ali\nce', '', 'a' * 33,
                     'a\0b', 'a\tb', 'a\x1b', None, 42):
            for version in ('v2.1', 'v2'):
                response = self.action(self.server['id'],
                                       change_password(name) if name
                                       is not None else
                                       {'changePassword': {
                                           'adminPass': PASSWORD,
                                           'userName': None}},
                                       version=version)
                self.assertEqual(400, response.status,
                                 (name, version, response.content))
                self.assertNoSecret(response.content.decode())
        self.assertNoGuestCall()
        self.assertIdle()

    def test_bad_passwords_refused_without_echoing_them(self):
        long_password = PASSWORD * 60
        for password, crypted in (
                (PASSWORD + '\nroot:x', False), (PASSWORD + '\0', False),
                ('', False), (long_password, False),
                (HASH + ':0:0:99999', True), (HASH + ' x', True)):
            response = self.action(
                self.server['id'],
                change_password('alice', password, crypted=crypted))
            self.assertEqual(400, response.status, response.content)
            self.assertNoSecret(response.content.decode(), PASSWORD, HASH,
                                long_password)
        self.assertNoGuestCall()

    def test_other_properties_refused_without_echoing_the_password(self):
        for extra in ({'foo': 'bar'}, {'crypted': 'yes'}):
            response = self.action(
                self.server['id'], change_password('alice', **extra))
            self.assertEqual(400, response.status, response.content)
            self.assertNoSecret(response.content.decode())
        self.assertNoGuestCall()

    # -- policy ---------------------------------------------------------

    def test_policy(self):
        for role, project, status in (
                ('admin', None, 202),
                ('member', None, 202),
                ('reader', None, 403),
                ('member', self.other_project_id, 404)):
            response = self.action(self.server['id'],
                                   change_password('alice'),
                                   api=self.api_as(role, project))
            self.assertEqual(status, response.status,
                             (role, project, response.content))
            self.assertNoSecret(response.content.decode())
        self.assertIdle()

    def test_novas_own_rule_applies_too(self):
        # set_rules() stops oslo.policy from merging in defaults registered
        # later, so ours is set explicitly, as its default.
        self.policy.set_rules({'os_compute_api:os-admin-password':
                               'role:admin',
                               up.RULE: up.POLICY_RULES[0].check_str},
                              overwrite=False)

        response = self.action(self.server['id'], change_password('alice'),
                               api=self.api_as('member'))

        self.assertEqual(403, response.status, response.content)
        self.assertEqual({}, self.agent.passwords)
        self.assertEqual(202, self.action(
            self.server['id'], change_password('alice'),
            api=self.api_as('admin')).status)

    # -- conflicts --------------------------------------------------------

    def assertConflict(self, response, *words, server=None, status=409):
        self.assertEqual(status, response.status, response.content)
        fault = next(iter(response.body.values()))
        for word in words:
            self.assertIn(word, fault['message'])
        self.assertNoSecret(response.content.decode())
        self.assertIdle(server)

    def test_unknown_server(self):
        response = self.action(uuidutils.generate_uuid(),
                               change_password('alice'))
        self.assertEqual(404, response.status, response.content)

    def test_locked_refused_for_everyone(self):
        self.api_as('admin').post_server_action(self.server['id'],
                                                {'lock': None})
        for role in ('member', 'admin'):
            self.assertConflict(
                self.action(self.server['id'], change_password('alice'),
                            api=self.api_as(role)), 'locked')
        self.assertNoGuestCall()

    def test_not_active(self):
        self._stop_server(self.server)
        self.assertConflict(
            self.action(self.server['id'], change_password('alice')),
            'stopped', 'ACTIVE')
        self.assertNoGuestCall()

    def test_task_in_progress(self):
        instance = self.instance(self.server)
        instance.task_state = task_states.REBOOTING
        instance.save()
        response = self.action(self.server['id'], change_password('alice'))
        self.assertEqual(409, response.status, response.content)
        self.assertIn('rebooting', response.body['conflictingRequest'][
            'message'])
        self.assertNoGuestCall()

    def test_agent_not_connected(self):
        self.agent.connected = False
        self.assertConflict(
            self.action(self.server['id'], change_password('alice')),
            'not connected')
        self.assertIn((EVENT, 'Error'),
                      self.server_events(self.server, 'changePassword'))

    def test_agent_timeout(self):
        self.agent.hung = True
        self.assertConflict(
            self.action(self.server['id'], change_password('alice')),
            'did not answer', status=504)

    def test_command_disabled_in_guest(self):
        self.agent.disable('guest-set-user-password')
        self.assertConflict(
            self.action(self.server['id'], change_password('alice')),
            'guest-set-user-password', 'disabled')

    def test_user_unknown_in_guest_names_the_agents_reason(self):
        self.assertConflict(
            self.action(self.server['id'], change_password('bob')),
            'user bob', 'child process has failed to set user password',
            'Check that the user exists in the guest')

    def test_image_without_guest_agent(self):
        server = self.create_active_server(agent=False)
        self.assertConflict(
            self.action(server['id'], change_password('alice')),
            'QEMU guest agent is not enabled', server=server)

    def test_crypted_refused_for_windows(self):
        image = dict(self.glance.image1, id=uuidutils.generate_uuid(),
                     name='windows')
        image['properties'] = dict(image['properties'], os_type='windows',
                                   hw_qemu_guest_agent='yes')
        self.glance.create(None, image)
        server = self._create_server(image_uuid=image['id'])
        agent = self.fake_agent(server)
        agent.users.add('Administrator')

        self.assertConflict(
            self.action(server['id'], change_password(
                'Administrator', HASH, crypted=True)),
            'Windows', server=server)
        self.assertNoGuestCall(agent)
        self.assertEqual(202, self.action(
            server['id'], change_password('Administrator')).status)

    def test_host_without_the_plugin(self):
        self.start_qga_compute('compute2', plugin=False)
        server = self.create_active_server(host='compute2')
        self.assertConflict(
            self.action(server['id'], change_password('alice')),
            'compute2', 'nova-qga-ext', server=server)
        self.assertNoGuestCall(self.fake_agent(server))

    def test_task_state_restored_when_the_call_fails(self):
        def timeout(self, ctxt, instance, method, *args, **kwargs):
            if method != 'set_admin_password':
                return original(self, ctxt, instance, method, *args,
                                **kwargs)
            raise rpc.ComputeHostTimeout(host=instance.host, timeout=60)
        original = rpc.ComputeAPI.call
        self.useFixture(fixtures.MonkeyPatch(
            'nova_qga_ext.rpc.ComputeAPI.call', timeout))

        self.assertConflict(
            self.action(self.server['id'], change_password('alice')),
            'did not answer within 60', status=504)
        self.assertNoGuestCall()

    # -- secrets ------------------------------------------------------------

    def test_no_secret_in_logs_faults_actions_or_notifications(self):
        logs = self.capture_debug_logs()
        self.assertEqual(202, self.action(
            self.server['id'], change_password('alice')).status)
        self.assertEqual(202, self.action(
            self.server['id'], change_password('alice', HASH, crypted=True),
            version='v2').status)
        self.assertEqual(400, self.action(
            self.server['id'], change_password('al:ice')).status)
        self.assertEqual(409, self.action(
            self.server['id'], change_password('bob')).status)
        self.agent.hung = True
        self.assertEqual(504, self.action(
            self.server['id'], change_password('alice')).status)

        self.assertIn('changePassword', logs.output)
        self.assertIn('Password of guest user alice set', logs.output)
        self.assertNoSecret(logs.output)
        notifications = json.dumps(
            [n for n in self.notifier.versioned_notifications] +
            [n.to_dict() if hasattr(n, 'to_dict') else repr(n)
             for n in self.notifier.notifications], default=repr)
        self.assertNoSecret(notifications)
        admin = self.api_as('admin')
        actions = admin.api_get('servers/%s/os-instance-actions' %
                                self.server['id']).body['instanceActions']
        self.assertNoSecret(json.dumps(actions))
        ctxt = nova_context.get_admin_context()
        mapping = objects.InstanceMapping.get_by_instance_uuid(
            ctxt, self.server['id'])
        with nova_context.target_cell(ctxt, mapping.cell_mapping) as cctxt:
            faults = objects.InstanceFaultList.get_by_instance_uuids(
                cctxt, [self.server['id']])
        self.assertTrue(faults)
        self.assertNoSecret(json.dumps([fault.obj_to_primitive()
                                        for fault in faults], default=repr))
