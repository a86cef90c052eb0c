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

"""The demo cloud's own pieces: paste config, images, Glance view, no-auth.

The cloud as a whole is tested by tests/functional/test_end_to_end.py.
"""

import datetime
import io
import os

import fixtures
import testtools
import webob

from nova_qga_ext.lab import cloud


class PasteConfigTest(testtools.TestCase):
    def test_nova_pipelines_get_noauth_and_the_filter(self):
        with open(cloud.stock_paste_config()) as f:
            text = cloud.paste_config(f.read())
        for name in ('openstack_compute_api_v21',
                     'openstack_compute_api_v21_legacy_v2_compatible'):
            section = text.split('[composite:%s]' % name)[1].split('[')[0]
            line = [x for x in section.splitlines()
                    if x.startswith('keystone')][0]
            self.assertTrue(line.endswith(
                ' qga_ext osapi_compute_app_v21'), line)
            self.assertIn(' qga_noauth ', line)
            self.assertNotIn('authtoken', line)
            self.assertNotIn('keystonecontext', line)
        self.assertIn('[filter:qga_ext]\nuse = egg:nova-qga-ext#qga_ext',
                      text)
        self.assertIn('nova_qga_ext.lab.cloud:noauth_filter_factory', text)

    def test_unknown_pipelines_fail_loudly(self):
        self.assertRaises(cloud.CloudError, cloud.paste_config,
                          '[composite:openstack_compute_api_v21]\n'
                          'keystone = cors osapi_compute_app_v21\n')


class NoAuthTest(testtools.TestCase):
    def test_every_request_is_the_projects_admin(self):
        seen = {}

        def app(environ, start_response):
            seen['context'] = environ['nova.context']
            start_response('204 No Content', [])
            return [b'']

        middleware = cloud.noauth_filter_factory({})(app)
        webob.Request.blank('/v2.1/servers').get_response(middleware)
        ctxt = seen['context']
        self.assertTrue(ctxt.is_admin)
        self.assertEqual(cloud.PROJECT_ID, ctxt.project_id)
        self.assertIn('admin', ctxt.roles)


class _Test:
    """What nova's image fake wants of its test case."""

    def __init__(self, parent):
        self.parent = parent

    def useFixture(self, fixture):
        return self.parent.useFixture(fixture)

    def stub_out(self, old, new):
        self.parent.useFixture(fixtures.MonkeyPatch(old, new))


class FileImageServiceTest(testtools.TestCase):
    def setUp(self):
        super().setUp()
        self.directory = self.useFixture(fixtures.TempDir()).path
        self.images = cloud.FileImageService(_Test(self), self.directory)
        self.useFixture(self.images)

    def test_upload_download_and_delete_go_through_files(self):
        image = self.images.create(None, {'name': 'k', 'disk_format': 'aki'},
                                   data=io.BytesIO(b'kernel bytes'))
        self.assertEqual('active', image['status'])
        self.assertEqual(12, image['size'])
        dst = os.path.join(self.directory, 'copy')
        self.images.download(None, image['id'], dst_path=dst)
        with open(dst, 'rb') as f:
            self.assertEqual(b'kernel bytes', f.read())
        self.images.delete(None, image['id'])
        self.assertFalse(os.path.exists(self.images.path(image['id'])))

    def test_snapshot_is_queued_until_its_data_arrives(self):
        image = self.images.create(None, {'name': 'snap'})
        self.assertEqual('queued', image['status'])
        image = self.images.update(None, image['id'],
                                   {'properties': {'a': 'b'}},
                                   data=io.BytesIO(b'disk'))
        self.assertEqual('active', image['status'])
        self.assertEqual('b', image['properties']['a'])
        self.assertEqual(4, os.path.getsize(self.images.path(image['id'])))

    def test_fake_builtin_images_are_gone(self):
        self.assertEqual([], self.images.detail(None))


class GlanceViewTest(testtools.TestCase):
    def test_properties_are_top_level_and_dates_strings(self):
        view = cloud.glance_v2_view({
            'id': 'abc', 'status': 'active',
            'created_at': datetime.datetime(2026, 1, 2, 3, 4, 5),
            'properties': {'qga_ext_freeze_window_ms': '12.5'}})
        self.assertEqual('12.5', view['qga_ext_freeze_window_ms'])
        self.assertEqual('2026-01-02T03:04:05Z', view['created_at'])
        self.assertEqual('/v2/images/abc', view['self'])
        self.assertNotIn('properties', view)

    def test_read_only_app(self):
        images = type('Images', (), {'images': {'abc': {
            'id': 'abc', 'status': 'active', 'properties': {}}}})()
        app = cloud.GlanceReadOnlyApp(images)
        response = webob.Request.blank('/v2/images/abc').get_response(app)
        self.assertEqual(200, response.status_int)
        self.assertEqual('active', response.json['status'])
        response = webob.Request.blank('/v2/images/nope').get_response(app)
        self.assertEqual(404, response.status_int)
        request = webob.Request.blank('/v2/images/abc', method='DELETE')
        self.assertEqual(405, request.get_response(app).status_int)
