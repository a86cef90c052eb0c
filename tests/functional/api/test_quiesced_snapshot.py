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

"""quiescedSnapshot through nova's API, conductor and compute manager.

The snapshot itself is nova's live snapshot on fakelibvirt, with the fake
qemu-ga counting freezes and thaws.
"""

import copy
from unittest import mock

from nova import exception as nova_exception
from nova.tests.fixtures import libvirt as fakelibvirt
from oslo_utils import uuidutils

from nova_qga_ext.extensions import quiesced_snapshot as qs
from tests.functional.api import base
from tests.functional.api import fake_qemu_agent


def _body(name='snap', **metadata):
    return {'quiescedSnapshot': {'name': name, 'metadata': metadata}}


class QuiescedSnapshotAPITest(base.QgaExtAPITestBase):

    def setUp(self):
        super().setUp()
        self.stub_live_snapshot()
        self.server = self.create_active_server()

    def snapshot(self, body=None, **kwargs):
        return self.action(self.server['id'], body or _body(), **kwargs)

    def wait_for_snapshot(self, result):
        # nova's compute_snapshot_instance event succeeds as soon as the
        # snapshot has started; the plugin's event ends with the snapshot.
        self._wait_for_instance_action_event(
            self.server, qs.ACTION, qs.EVENT, result)
        self._wait_for_server_parameter(
            self.server, {'OS-EXT-STS:task_state': None, 'status': 'ACTIVE'})

    def image(self, image_id):
        try:
            return self.glance.show(None, image_id)
        except nova_exception.ImageNotFound:
            return None

    def agent_commands(self, *names):
        return [command for command in self.fake_agent(self.server).commands
                if command in names]

    def test_snapshot(self):
        response = self.snapshot(_body('snap', purpose='backup'))

        self.assertEqual(202, response.status, response.body)
        image_id = response.body['image_id']
        self.assertTrue(response.headers['Location'].endswith(image_id))
        self.wait_for_snapshot('success')
        image = self.image(image_id)
        self.assertEqual('active', image['status'])
        properties = image['properties']
        self.assertEqual('backup', properties['purpose'])
        self.assertEqual(qs.QUIESCE_REQUIRED,
                         properties[qs.QUIESCE_PROPERTY])
        self.assertEqual('2', properties[qs.FROZEN_FILESYSTEMS_PROPERTY])
        self.assertGreaterEqual(
            float(properties[qs.FREEZE_WINDOW_PROPERTY]), 0)
        # One freeze and one thaw: nova's own quiesce did not run as well.
        self.assertEqual(['guest-fsfreeze-freeze', 'guest-fsfreeze-thaw'],
                         self.agent_commands('guest-fsfreeze-freeze',
                                             'guest-fsfreeze-thaw'))
        self.assertFalse(self.fake_agent(self.server).frozen)

    def test_properties_not_inherited(self):
        # A server booted from a quiesced snapshot. Its image has no agent:
        # fakelibvirt cannot run nova's own quiesce (the thaw that follows
        # the redefinition finds the domain "shut off"), and an inherited
        # marker would fail this createImage.
        image = copy.deepcopy(self.glance.show(None, self.plain_image_id))
        image['id'] = uuidutils.generate_uuid()
        image['properties'].update({
            qs.QUIESCE_PROPERTY: qs.QUIESCE_REQUIRED,
            qs.FREEZE_WINDOW_PROPERTY: '12.3',
            qs.FROZEN_FILESYSTEMS_PROPERTY: '2'})
        self.glance.create(None, image)
        child = self._create_server(image_uuid=image['id'])
        agent = self.fake_agent(child)

        response = self.action(child['id'], {'createImage': {'name': 'c'}},
                               microversion='2.45')

        self.assertEqual(202, response.status, response.body)
        self._wait_for_server_parameter(child,
                                        {'OS-EXT-STS:task_state': None})
        image = self.image(response.body['image_id'])
        self.assertEqual('active', image['status'])
        self.assertEqual([], [key for key in image['properties']
                              if key.startswith(qs.PROPERTY_PREFIX)])
        self.assertEqual([], agent.commands)

    def test_snapshot_on_legacy_v2(self):
        response = self.snapshot(version='v2')

        self.assertEqual(202, response.status, response.body)
        self.wait_for_snapshot('success')
        self.assertEqual('active',
                         self.image(response.body['image_id'])['status'])

    def test_freeze_failure_deletes_image(self):
        agent = self.fake_agent(self.server)

        def hung_freeze():
            agent.frozen = True
            raise fake_qemu_agent.libvirt_error(
                fakelibvirt.VIR_ERR_AGENT_UNRESPONSIVE,
                'Guest agent is not responding: Guest agent not available '
                'for now')

        agent._guest_fsfreeze_freeze = hung_freeze
        response = self.snapshot()

        self.assertEqual(202, response.status, response.body)
        self.wait_for_snapshot('error')
        self.assertIsNone(self.image(response.body['image_id']))
        # The freeze that timed out may have taken effect: thawed anyway.
        self.assertEqual(['guest-fsfreeze-freeze', 'guest-fsfreeze-thaw'],
                         self.agent_commands('guest-fsfreeze-freeze',
                                             'guest-fsfreeze-thaw'))
        self.assertFalse(agent.frozen)

    def assert_refused(self, response, status, *words):
        self.assertEqual(status, response.status, response.body)
        message = str(response.body)
        for word in words:
            self.assertIn(word, message)
        self.assertIsNone(self.server_task_state(self.server))
        self.assertEqual([], self.agent_commands('guest-fsfreeze-freeze'))
        self.assertEqual(
            [], [i for i in self.glance.images.values()
                 if i.get('properties', {}).get(qs.QUIESCE_PROPERTY)])

    def test_agent_not_connected(self):
        self.fake_agent(self.server).connected = False
        self.assert_refused(self.snapshot(), 409, 'not connected')

    def test_fsfreeze_disabled(self):
        self.fake_agent(self.server).disable('guest-fsfreeze-thaw')
        self.assert_refused(self.snapshot(), 409, 'guest-fsfreeze-thaw')

    def test_already_frozen(self):
        self.fake_agent(self.server).frozen = True
        self.assert_refused(self.snapshot(), 409, 'frozen already')

    def test_image_without_agent(self):
        self.server = self.create_active_server(agent=False)
        self.assert_refused(self.snapshot(), 409, 'QEMU guest agent')

    def test_agent_timeout(self):
        self.fake_agent(self.server).hung = True
        self.assert_refused(self.snapshot(), 504)

    def test_host_without_plugin(self):
        self.start_qga_compute('compute2', plugin=False)
        self.server = self.create_active_server(host='compute2')
        self.assert_refused(self.snapshot(), 409, 'compute2')

    def test_volume_backed(self):
        with mock.patch('nova.compute.utils.is_volume_backed_instance',
                        return_value=True):
            self.assert_refused(self.snapshot(), 409, 'volume-backed')

    def test_locked(self):
        admin = self.api_as('admin')
        self.assertEqual(202, self.action(self.server['id'], {'lock': None},
                                          api=admin).status)
        for api in (self.api, admin):
            self.assert_refused(self.snapshot(api=api), 409, 'locked')

    def test_task_in_progress(self):
        instance = self.instance(self.server)
        instance.task_state = 'image_snapshot'
        instance.save()
        response = self.snapshot()
        self.assertEqual(409, response.status, response.body)
        self.assertIn('image_snapshot', str(response.body))

    def test_policy(self):
        response = self.snapshot(api=self.api_as('reader'))
        self.assertEqual(403, response.status, response.body)
        self.assertIn(qs.RULE, response.body['forbidden']['message'])
        # Another project's member does not even see the server.
        response = self.snapshot(
            api=self.api_as('member', self.other_project_id))
        self.assertEqual(404, response.status, response.body)
        self.assertIsNone(self.server_task_state(self.server))
        response = self.snapshot(api=self.api_as('admin'))
        self.assertEqual(202, response.status, response.body)
        self.wait_for_snapshot('success')

    def test_invalid_bodies(self):
        for body in (
                {'quiescedSnapshot': {}},
                {'quiescedSnapshot': {'name': ''}},
                {'quiescedSnapshot': {'name': 'x', 'extra': 1}},
                {'quiescedSnapshot': {'name': 'x', 'metadata': {'k': 1}}}):
            response = self.snapshot(body)
            self.assertEqual(400, response.status, (body, response.body))

    def test_reserved_properties(self):
        response = self.snapshot(_body(**{qs.FREEZE_WINDOW_PROPERTY: '0'}))
        self.assertEqual(400, response.status, response.body)
        self.assertIn(qs.FREEZE_WINDOW_PROPERTY, str(response.body))
