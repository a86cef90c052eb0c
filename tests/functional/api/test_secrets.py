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

"""Secrets audit: no password, hash, exec input or env value is recorded.

Every operation runs through nova's real API, RPC and compute manager down
to the fake qemu-ga, on its success and its failure paths (400s, agent not
connected, timeouts, commands the guest refuses), with distinctive random
secrets. Then everything nova and the plugin recorded is searched for them,
raw and base64-encoded:

* every log record from DEBUG up, of every logger;
* legacy and versioned notifications;
* instance actions and their events, through the os-instance-actions API
  (as admin, with tracebacks and details) and in the cell database;
* instance faults;
* the API responses themselves (error messages).

Each test also checks that the secrets did reach the guest, so that the
audit covers requests that got through, and that the captures are not
empty.
"""

import base64
import secrets
import time

from nova import context as nova_context
from nova import objects
from nova.tests import fixtures as nova_fixtures
from oslo_serialization import jsonutils

from tests.functional.api import base
from tests.functional.api import fake_qemu_agent

MAX_INPUT_BYTES = 64


def b64(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.b64encode(data).decode()


class SecretsAuditTestBase(base.QgaExtAPITestBase):

    def setUp(self):
        super().setUp()
        # Every kind of notification nova can send about the server.
        self.flags(notification_format='both',
                   notify_on_state_change='vm_and_task_state',
                   group='notifications')
        self.notifier = self.useFixture(
            nova_fixtures.NotificationFixture(self))
        self.admin = self.api_as('admin')
        self.server = self.create_active_server()
        self.agent = self.fake_agent(self.server)
        self.logs = self.capture_debug_logs()
        self.secrets = []
        self.responses = []

    def secret(self, label):
        value = '%s-%s' % (label, secrets.token_hex(12))
        self.secrets.append(value)
        return value

    def call(self, body, expected):
        response = self.action(self.server['id'], body, api=self.admin)
        self.assertEqual(expected, response.status, response.content)
        self.responses.append(response.content.decode())
        return response

    def wait_for_no_task(self, timeout=20):
        deadline = time.monotonic() + timeout
        while self.server_task_state(self.server) is not None:
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.05)

    # -- what was recorded ---------------------------------------------------

    def _notifications(self):
        legacy = [{'event_type': n.event_type, 'payload': n.payload,
                   'publisher_id': n.publisher_id}
                  for n in self.notifier.notifications]
        return jsonutils.dumps(
            {'legacy': legacy,
             'versioned': self.notifier.versioned_notifications},
            default=repr)

    def _actions_api(self):
        admin = self.api_as('admin')
        admin.microversion = '2.84'
        actions = admin.api_get('servers/%s/os-instance-actions' %
                                self.server['id']).body['instanceActions']
        details = [admin.api_get('servers/%s/os-instance-actions/%s' % (
            self.server['id'], action['request_id'])).body
            for action in actions]
        return actions, jsonutils.dumps([actions, details])

    def _actions_and_faults_db(self):
        ctxt = nova_context.get_admin_context()
        mapping = objects.InstanceMapping.get_by_instance_uuid(
            ctxt, self.server['id'])
        records = []
        with nova_context.target_cell(ctxt, mapping.cell_mapping) as cctxt:
            for action in objects.InstanceActionList.get_by_instance_uuid(
                    cctxt, self.server['id']):
                records.append(action.obj_to_primitive())
                for event in objects.InstanceActionEventList.get_by_action(
                        cctxt, action.id):
                    records.append(event.obj_to_primitive())
            faults = objects.InstanceFaultList.get_by_instance_uuids(
                cctxt, [self.server['id']])
            fault_records = [fault.obj_to_primitive() for fault in faults]
        return (jsonutils.dumps(records, default=repr),
                jsonutils.dumps(fault_records, default=repr),
                len(fault_records))

    def assertNoSecretRecorded(self, actions=(), faults=0):
        """No secret anywhere; ``actions`` recorded, ``faults`` at least."""
        self.assertGreater(len(self.secrets), 0)
        action_list, actions_api = self._actions_api()
        actions_db, faults_db, fault_count = self._actions_and_faults_db()
        captures = {
            'logs': self.logs.output,
            'notifications': self._notifications(),
            'instance actions (API)': actions_api,
            'instance actions (DB)': actions_db,
            'instance faults': faults_db,
            'API responses': '\n'.join(self.responses),
        }
        for secret in self.secrets:
            for form in (secret, b64(secret)):
                for name, text in captures.items():
                    at = text.find(form)
                    if at >= 0:
                        self.fail('%s found in %s: ...%s...' % (
                            form, name, text[max(0, at - 300):at + 100]))
        # The audit saw what it should have.
        self.assertIn('DEBUG [', self.logs.output)
        self.assertGreater(len(self.notifier.versioned_notifications), 0)
        recorded = {action['action'] for action in action_list}
        self.assertTrue(set(actions) <= recorded, (actions, recorded))
        self.assertGreaterEqual(fault_count, faults)


class TestChangePasswordSecrets(SecretsAuditTestBase):

    QGA_EXTENSIONS = ['user_password']

    def test_change_password(self):
        # Set: clear text, then a crypt(3) hash.
        password = self.secret('pw')
        self.call({'changePassword': {'adminPass': password,
                                      'userName': 'root'}}, 202)
        self.assertEqual((password, False), self.agent.passwords['root'])
        digest = '$6$%s$%s' % (self.secret('salt')[:16], self.secret('hash'))
        self.secrets.append(digest)
        self.call({'changePassword': {'adminPass': digest,
                                      'userName': 'root', 'crypted': True}},
                  202)
        self.assertEqual((digest, True), self.agent.passwords['root'])
        # nova's own changePassword, through the plugin's driver.
        self.call({'changePassword': {'adminPass': self.secret('nova')}},
                  202)

        # The guest refuses: no such user.
        self.call({'changePassword': {'adminPass': self.secret('pw'),
                                      'userName': 'nobody'}}, 409)
        # The agent is down, or does not answer.
        self.agent.connected = False
        self.call({'changePassword': {'adminPass': self.secret('pw'),
                                      'userName': 'root'}}, 409)
        self.agent.connected = True
        self.agent.hung = True
        self.call({'changePassword': {'adminPass': self.secret('pw'),
                                      'userName': 'root'}}, 504)
        self.agent.hung = False
        # Refused by the API, with the secret next to the error.
        for entity in (
                {'adminPass': self.secret('pw'), 'userName': 'a:b'},
                {'adminPass': self.secret('pw') + '\nx', 'userName': 'root'},
                {'adminPass': self.secret('pw') + 'x' * 1024,
                 'userName': 'root'},
                {'adminPass': '$6$' + self.secret('hash') + ':x',
                 'userName': 'root', 'crypted': True},
                {'adminPass': self.secret('pw'), 'userName': 'root',
                 'uid': 0},
                {'adminPass': self.secret('pw'), 'userName': 'root',
                 'crypted': 'yes'},
                {'adminPass': self.secret('pw'), 'crypted': True}):
            self.call({'changePassword': entity}, 400)
        self.assertNoSecretRecorded(actions=('changePassword',), faults=1)


class TestGuestExecSecrets(SecretsAuditTestBase):

    QGA_EXTENSIONS = ['guest_exec']

    def setUp(self):
        super().setUp()
        self.flags(max_input_bytes=MAX_INPUT_BYTES, group='qga_ext')

    def exec_body(self, command=None, **kwargs):
        stdin = self.secret('stdin')
        value = self.secret('env')
        entity = {'command': command or ['/bin/true'], 'input': b64(stdin),
                  'env': ['LANG=C', 'TOKEN=' + value]}
        entity.update(kwargs)
        return {'guestExec': entity}

    def test_guest_exec(self):
        # Waited, and not: the guest got the input and the environment.
        self.call(self.exec_body(), 200)
        process = self.agent.process()
        self.assertEqual(self.secrets[-2].encode(), process.stdin)
        self.assertEqual('TOKEN=' + self.secrets[-1], process.env[1])
        self.agent.exec_handler = lambda process: setattr(
            process, 'running_polls', 1)
        pid = self.call(self.exec_body(wait=False), 202).body[
            'guestExec']['pid']
        self.call({'guestExecStatus': {'pid': pid}}, 200)
        self.call({'guestExecStatus': {'pid': pid}}, 200)
        self.call({'guestExecStatus': {'pid': pid + 100}}, 404)
        self.agent.exec_handler = fake_qemu_agent.default_exec

        # The input comes back as output, waited and by status; the result
        # is the caller's (not audited) but must not be logged anywhere.
        for wait, key in ((True, 'guestExec'), (False, 'guestExecStatus')):
            body = self.exec_body(['/bin/cat'], wait=wait)
            response = self.action(self.server['id'], body, api=self.admin)
            if not wait:
                response = self.action(self.server['id'], {
                    key: response.body['guestExec']}, api=self.admin)
            self.assertEqual(200, response.status, response.content)
            self.assertEqual(body['guestExec']['input'],
                             response.body[key]['stdout'])

        # The guest cannot run it.
        self.call(self.exec_body(['/no/such/program']), 409)
        # The guest exits non-zero: a result, not an error.
        self.call(self.exec_body(['/bin/false']), 200)
        # The agent is down, or does not answer, before the start.
        self.agent.connected = False
        self.call(self.exec_body(), 409)
        self.agent.connected = True
        self.agent.hung = True
        self.call(self.exec_body(), 504)
        self.agent.hung = False
        # ... or after it.
        self.agent.handlers['guest-exec-status'] = self._timeout
        self.call(self.exec_body(), 504)
        del self.agent.handlers['guest-exec-status']
        # The command is disabled in the guest.
        self.agent.disable('guest-exec')
        self.call(self.exec_body(), 409)
        self.agent.disabled.clear()

        # Refused by the API, with the secrets next to the error.
        too_big = self.secret('stdin') * 10
        self.assertGreater(len(too_big), MAX_INPUT_BYTES)
        for body in (
                self.exec_body(input=b64(too_big)),
                self.exec_body(input='%' + self.secret('stdin')),
                self.exec_body(env=['=' + self.secret('env')]),
                self.exec_body(env=['X' + self.secret('env')]),
                self.exec_body(env={'TOKEN': self.secret('env')}),
                self.exec_body(timeout='soon'),
                self.exec_body(timeout=10 ** 9),
                self.exec_body(wait=False, timeout=5),
                self.exec_body(user='root'),
                self.exec_body(command='/bin/true')):
            self.call(body, 400)
        self.assertNoSecretRecorded(actions=('guestExec',))

    @staticmethod
    def _timeout(**arguments):
        raise fake_qemu_agent.agent_timeout()


class TestQuiescedSnapshotSecrets(SecretsAuditTestBase):
    """Snapshots after secrets were sent: none travels with the image."""

    def setUp(self):
        super().setUp()
        self.stub_live_snapshot()

    def send_secrets(self):
        self.call({'changePassword': {'adminPass': self.secret('pw'),
                                      'userName': 'root'}}, 202)
        self.call({'guestExec': {
            'command': ['/bin/true'], 'input': b64(self.secret('stdin')),
            'env': ['TOKEN=' + self.secret('env')]}}, 200)

    def test_quiesced_snapshot(self):
        self.send_secrets()
        # The agent is down: refused up front.
        self.agent.connected = False
        self.call({'quiescedSnapshot': {'name': 'snap'}}, 409)
        self.agent.connected = True
        image_id = self.call({'quiescedSnapshot': {'name': 'snap'}},
                             202).body['image_id']
        self.wait_for_no_task()
        image = self.glance.show(None, image_id)
        self.assertEqual('active', image['status'])
        self.responses.append(jsonutils.dumps(image, default=repr))
        self.assertNoSecretRecorded(
            actions=('changePassword', 'guestExec', 'quiescedSnapshot'))

    def test_quiesced_snapshot_freeze_fails(self):
        self.send_secrets()
        # The freeze fails in the middle of the snapshot: an instance fault.
        self.agent.handlers['guest-fsfreeze-freeze'] = self._refuse
        self.call({'quiescedSnapshot': {'name': 'snap'}}, 202)
        self.wait_for_no_task()
        self.assertFalse(self.agent.frozen)
        self.assertNoSecretRecorded(
            actions=('changePassword', 'guestExec', 'quiescedSnapshot'),
            faults=1)

    @staticmethod
    def _refuse(**arguments):
        raise fake_qemu_agent.agent_refusal(
            'guest-fsfreeze-freeze', 'failed to freeze /: Device busy')
