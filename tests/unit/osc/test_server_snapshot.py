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
import json
from unittest import mock

import fixtures
from openstack import exceptions as sdk_exceptions
from osc_lib import exceptions

from nova_qga_ext.osc.v2 import server_snapshot
from tests.unit.osc import fakes

IMAGE_ID = '0b9d7a3e-1f2c-4d5e-8a6b-7c8d9e0f1a2b'


class TestCreateServerSnapshot(fakes.CommandTestCase):

    def setUp(self):
        super().setUp()
        self.sleep = self.useFixture(
            fixtures.MockPatch('time.sleep')).mock

    def snapshot(self, argv, *image_states):
        self.compute.replies.append(fakes.response(
            202, {'image_id': IMAGE_ID},
            {'Location': 'http://glance/v2/images/%s' % IMAGE_ID}))
        self.images.states.extend(image_states)
        return self.run_command(server_snapshot.CreateServerSnapshot,
                                ['-f', 'json'] + argv)

    def test_prints_image_id_without_waiting(self):
        status, out, err = self.snapshot(
            ['web1', '--name', 'nightly', '--property', 'a=1',
             '--property', 'b=x=y'])
        self.assertEqual(0, status)
        self.assertEqual({'id': IMAGE_ID, 'name': 'nightly',
                          'server': fakes.SERVER_ID}, json.loads(out))
        self.assertEqual(
            [{'quiescedSnapshot': {'name': 'nightly',
                                   'metadata': {'a': '1', 'b': 'x=y'}}}],
            self.compute.bodies)
        self.assertEqual([], self.images.gets)
        self.assertEqual(b'', err)

    def test_no_properties_sends_empty_metadata(self):
        self.snapshot(['web1', '--name', 'n'])
        self.assertEqual({}, self.compute.bodies[0]['quiescedSnapshot'][
            'metadata'])

    def test_name_is_required(self):
        self.useFixture(fixtures.MonkeyPatch('sys.stderr', io.StringIO()))
        self.assertRaises(SystemExit, self.parse,
                          server_snapshot.CreateServerSnapshot, ['web1'])

    def test_wait_shows_progress_then_the_freeze_window(self):
        status, out, err = self.snapshot(
            ['web1', '--name', 'n', '--wait'],
            {'status': 'queued'}, {'status': 'saving'},
            {'status': 'saving'},
            {'status': 'active', 'qga_ext_freeze_window_ms': '37',
             'qga_ext_frozen_filesystems': '2'})
        self.assertEqual(0, status)
        self.assertEqual({'id': IMAGE_ID, 'name': 'n',
                          'server': fakes.SERVER_ID, 'status': 'active',
                          'freeze_window_ms': '37',
                          'frozen_filesystems': '2'}, json.loads(out))
        self.assertEqual([IMAGE_ID] * 4, self.images.gets)
        self.assertEqual(3, self.sleep.call_count)
        lines = err.decode().splitlines()
        self.assertEqual(3, len(lines), lines)
        for line, state in zip(lines, ('queued', 'saving', 'active')):
            self.assertTrue(
                line.startswith('Image %s: %s after' % (IMAGE_ID, state)),
                line)

    def test_wait_without_freeze_properties(self):
        _status, out, _err = self.snapshot(
            ['web1', '--name', 'n', '--wait'], {'status': 'ACTIVE'})
        result = json.loads(out)
        self.assertIsNone(result['freeze_window_ms'])
        self.assertIsNone(result['frozen_filesystems'])

    def test_wait_fails_when_nova_deletes_the_image(self):
        exc = self.assertRaises(
            exceptions.CommandError, self.snapshot,
            ['web1', '--name', 'n', '--wait'], {'status': 'queued'},
            sdk_exceptions.NotFoundException('No Image found'))
        self.assertIn('Nova deleted the image', str(exc))
        self.assertIn('openstack server event list %s' % fakes.SERVER_ID,
                      str(exc))

    def test_wait_fails_on_a_dead_image(self):
        exc = self.assertRaises(
            exceptions.CommandError, self.snapshot,
            ['web1', '--name', 'n', '--wait'], {'status': 'killed'})
        self.assertEqual(
            'Snapshot %s of server %s failed: the image is killed'
            % (IMAGE_ID, fakes.SERVER_ID), str(exc))

    def test_wait_reports_image_api_errors(self):
        exc = self.assertRaises(
            exceptions.CommandError, self.snapshot,
            ['web1', '--name', 'n', '--wait'],
            sdk_exceptions.HttpException(
                response=fakes.response(503, {'error': {
                    'message': 'Glance is down'}}),
                details='Glance is down'))
        self.assertEqual('Waiting for image %s failed: Glance is down '
                         '(HTTP 503)' % IMAGE_ID, str(exc))

    def test_quiesce_refused(self):
        self.compute.replies.append(fakes.response(409, {
            'conflictingRequest': {
                'code': 409,
                'message': 'Cannot quiesce: guest-fsfreeze-freeze is '
                           'disabled in the guest agent'}}))
        exc = self.assertRaises(
            exceptions.CommandError, self.run_command,
            server_snapshot.CreateServerSnapshot,
            ['web1', '--name', 'n', '--wait'])
        self.assertIn('quiescedSnapshot on server %s failed: Cannot '
                      'quiesce' % fakes.SERVER_ID, str(exc))
        self.assertEqual([], self.images.gets)

    @mock.patch('time.monotonic', side_effect=[100.0, 100.0, 112.4])
    def test_progress_shows_elapsed_seconds(self, _monotonic):
        _status, _out, err = self.snapshot(
            ['web1', '--name', 'n', '--wait'],
            {'status': 'saving'}, {'status': 'active'})
        self.assertIn(b'saving after 0 s\n', err)
        self.assertIn(b'active after 12 s\n', err)
