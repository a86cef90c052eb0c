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

"""Base class of the API tests: nova's own services, in-process.

``QgaExtAPITestBase`` runs nova's real API WSGI app (loaded from nova's
api-paste.ini with the ``qga_ext`` filter inserted into both pipelines),
conductor, scheduler, placement and compute manager with
``qga_ext.LibvirtDriver`` on fakelibvirt, plus a fake ``libvirt_qemu``
(``fake_qemu_agent``). Policy is enforced with the new defaults and scopes,
as production nova 34 does. The project must be installed (not editable):
the filter is loaded as ``egg:nova-qga-ext#qga_ext`` and the driver through
the ``nova.virt.qga_ext`` shim.

Class attributes:

``QGA_EXTENSIONS``
    ``[qga_ext] extensions`` for API and computes; None (default) enables
    every installed extension and every one in ``EXTRA_EXTENSIONS``.
``EXTRA_EXTENSIONS``
    ``{name: Extension class}`` added to the installed ones (stevedore's
    view is patched), for test-only extensions.
``START_COMPUTE``
    Start ``compute1`` with the plugin in setUp (default True).

Helpers:

``self.start_qga_compute(hostname='compute1', plugin=True)``
    Start a compute service, with ``qga_ext.LibvirtDriver`` or, with
    ``plugin=False``, nova's plain ``libvirt.LibvirtDriver``. Returns the
    compute service (also in ``self.computes[hostname]``).
``self.stub_live_snapshot()``
    Let nova's live snapshot run on fakelibvirt (a transient domain, no
    disk files behind it).
``self.create_active_server(host=None, agent=True, api=None, **kwargs)``
    Boot a server from an image with ``hw_qemu_guest_agent=yes`` (``agent=
    False``: without it, so the domain has no agent channel) and wait for
    ACTIVE. ``host`` forces the compute host. Returns the server dict.
``self.agent_image_id`` / ``self.plain_image_id``
    The ids of those two images.
``self.fake_agent(server)``
    The ``fake_qemu_agent.FakeGuestAgent`` of the server's domain (a server
    dict or id).
``self.action(server_id, body, api=None, version='v2.1', microversion=None,
project_id_in_url=False)``
    POST ``/{version}[/{project}]/servers/{id}/action`` with the JSON
    ``body`` through the full pipeline; never raises on a status. Returns
    nova's ``APIResponse``: ``.status``, ``.body`` (decoded JSON or ``{}``),
    ``.headers``, ``.content`` (raw bytes). ``api`` defaults to ``self.api``
    (project member).
``self.api_as(role, project_id=None)``
    An API client with nova's test client interface: role ``'admin'``,
    ``'member'``, ``'reader'`` or any other role name; ``project_id``
    defaults to the project of ``self.api``, pass another one for the
    "other project" case. ``self.other_project_id`` is such a project.
``self.server_task_state(server)`` / ``self.server_events(server, action)``
    The server's ``OS-EXT-STS:task_state`` (as admin), and the instance
    action events of the last ``action`` of that name as a list of
    ``(event, result)`` (``openstack server event show``).
``self.instance(server)``
    The server's ``nova.objects.Instance``, read from its cell database
    (to set up states the API cannot reach, e.g. a task in progress).
``self.capture_debug_logs()``
    Start capturing every log record at DEBUG level; returns an object
    whose ``.output`` is the text logged since.
``self.paste_config``
    Path of the generated api-paste.ini;
    ``nova_qga_ext.lab.cloud.stock_paste_config()`` returns nova's own,
    unmodified one.
``self.load_wsgi_app(paste_config)``
    The ``osapi_compute`` WSGI app of a paste config, to call directly with
    ``webob.Request.blank(...).get_response(app)``.
``self.qemu_agents``
    The ``FakeQemuAgentFixture``.
"""

import io
import logging
import os
import re

import fixtures
from nova.api import wsgi as nova_wsgi
from nova import conf as nova_conf
from nova import context as nova_context
from nova import objects
from nova import policy as nova_policy
from nova.tests.fixtures import libvirt as fakelibvirt
from nova.tests.functional.api import client
from nova.tests.functional.libvirt import base as libvirt_base
from oslo_utils import uuidutils

from nova_qga_ext import conf as qga_conf
from nova_qga_ext.extensions import manager
from nova_qga_ext.lab import cloud as lab_cloud
from tests.functional.api import fake_qemu_agent

CONF = nova_conf.CONF

_APP = 'osapi_compute_app_v21'
_PIPELINES = ('openstack_compute_api_v21',
              'openstack_compute_api_v21_legacy_v2_compatible')
_FILTER_SECTION = '[filter:qga_ext]\nuse = egg:nova-qga-ext#qga_ext\n'

_ROLES = {
    'admin': ['reader', 'member', 'admin'],
    'member': ['reader', 'member'],
    'reader': ['reader'],
}


def paste_config_with_filter(stock):
    """nova's api-paste.ini with qga_ext before the app in both pipelines.

    Generated from nova's own file, so that the tests follow nova's
    pipelines; a nova whose pipelines no longer match fails loudly here.
    """
    lines = []
    section = None
    inserted = set()
    for line in stock.splitlines(keepends=True):
        header = re.match(r'\s*\[(?:composite|pipeline):(\S+)\]', line)
        if header or line.lstrip().startswith('['):
            section = header.group(1) if header else None
        elif (section in _PIPELINES and
                re.match(r'\s*keystone\s*=', line) and
                re.search(r'\s%s\s*$' % _APP, line)):
            line = re.sub(r'(\s)%s(\s*)$' % _APP,
                          r'\1qga_ext %s\2' % _APP, line)
            inserted.add(section)
        lines.append(line)
    missing = set(_PIPELINES) - inserted
    if missing:
        raise RuntimeError(
            'nova api-paste.ini changed: no keystone pipeline ending in %s '
            'in %s' % (_APP, ', '.join(sorted(missing))))
    return ''.join(lines) + '\n' + _FILTER_SECTION


class DebugLogCapture(fixtures.Fixture):
    """Every log record from DEBUG up, formatted with its arguments."""

    def setUp(self):
        super().setUp()
        self._stream = io.StringIO()
        handler = logging.StreamHandler(self._stream)
        handler.setFormatter(logging.Formatter(
            '%(levelname)s [%(name)s] %(message)s'))
        handler.setLevel(logging.DEBUG)
        self.useFixture(fixtures.LogHandler(handler, level=logging.DEBUG,
                                            nuke_handlers=False))

    @property
    def output(self):
        return self._stream.getvalue()


class QgaExtAPITestBase(libvirt_base.ServersTestBase):

    QGA_EXTENSIONS = None
    EXTRA_EXTENSIONS = {}
    START_COMPUTE = True

    #: The project of ``api_as(..., project_id=other_project_id)``.
    other_project_id = 'a1b2c3d4e5f60718293a4b5c6d7e8f90'

    def setUp(self):
        self.qemu_agents = self.useFixture(
            fake_qemu_agent.FakeQemuAgentFixture())
        super().setUp()
        if self.START_COMPUTE:
            self.start_qga_compute('compute1')

    # -- set-up hooks of nova's base classes --------------------------------

    def _setup_services(self):
        self._configure_extensions()
        self.paste_config = os.path.join(
            self.useFixture(fixtures.TempDir()).path, 'api-paste.ini')
        with open(lab_cloud.stock_paste_config()) as stock:
            text = paste_config_with_filter(stock.read())
        with open(self.paste_config, 'w') as config:
            config.write(text)
        self.flags(api_paste_config=self.paste_config, group='wsgi')
        # The placement fixture turned this off for nova too; production
        # nova 34 enforces the new defaults (oslo.policy 6 always enforces
        # scopes).
        self.flags(enforce_new_defaults=True, group='oslo_policy')
        nova_policy.reset()
        nova_policy.init(suppress_deprecation_warnings=True)
        super()._setup_services()
        self._create_images()

    def _configure_extensions(self):
        installed = manager.installed
        extra = dict(self.EXTRA_EXTENSIONS)

        def _installed():
            return {**installed(), **extra}

        self.useFixture(fixtures.MonkeyPatch(
            'nova_qga_ext.extensions.manager.installed', _installed))
        names = self.QGA_EXTENSIONS
        if names is None:
            available = _installed()
            default = [name for name in qga_conf.CORE_OPTS[0].default
                       if name in available]
            names = default + sorted(set(available) - set(default))
        qga_conf.register_opts(CONF)
        self.flags(extensions=names, group='qga_ext')

    def _create_images(self):
        base = dict(self.glance.image1)
        base.pop('id')
        self.agent_image_id = uuidutils.generate_uuid()
        self.plain_image_id = uuidutils.generate_uuid()
        for image_id, name, agent in (
                (self.agent_image_id, 'qga-image', True),
                (self.plain_image_id, 'no-agent-image', False)):
            image = dict(base, id=image_id, name=name)
            image['properties'] = dict(base['properties'])
            if agent:
                image['properties']['hw_qemu_guest_agent'] = 'yes'
            self.glance.create(None, image)

    # -- helpers --------------------------------------------------------------

    def start_qga_compute(self, hostname='compute1', plugin=True):
        self.flags(compute_driver='qga_ext.LibvirtDriver' if plugin
                   else 'libvirt.LibvirtDriver')
        self.start_compute(hostname)
        return self.computes[hostname]

    def stub_live_snapshot(self):
        """Let nova's live snapshot run on fakelibvirt.

        fakelibvirt's undefine() removes even a running domain, where real
        libvirt keeps it transient, which nova's live snapshot relies on;
        and the fake domains have no disk files for qemu-img and privsep.
        """
        self.useFixture(fixtures.MockPatchObject(
            fakelibvirt.Domain, 'isPersistent', return_value=False))
        for name, value in (('get_disk_size', 1 << 30),
                            ('get_disk_backing_file', None),
                            ('create_image', None),
                            ('extract_snapshot', None)):
            self.useFixture(fixtures.MockPatch(
                'nova.virt.libvirt.utils.' + name, return_value=value))
        self.useFixture(fixtures.MockPatch('nova.privsep.path.chown'))

    def create_active_server(self, host=None, agent=True, api=None,
                             **kwargs):
        image = self.agent_image_id if agent else self.plain_image_id
        if host is not None:
            # Forcing a host takes an admin and microversion 2.74.
            api = api or self.api_as('admin')
            api.microversion = '2.74'
            kwargs.setdefault('networks', 'none')
        return self._create_server(image_uuid=image, host=host, api=api,
                                   **kwargs)

    def fake_agent(self, server):
        server_id = server['id'] if isinstance(server, dict) else server
        return self.qemu_agents.agent(server_id)

    def _base_url(self, version, project_id=None):
        url = re.sub(r'/v2(\.1)?(/.*)?$', '/' + version,
                     self.api_fixture.base_url)
        if project_id:
            url += '/' + project_id
        return url

    def api_as(self, role, project_id=None):
        project_id = project_id or self.api.project_id
        roles = _ROLES.get(role, [role])
        user = 'admin' if role == 'admin' else 'user-%s' % role
        return client.TestOpenStackClient(
            user, self._base_url('v2.1'), project_id=project_id, roles=roles)

    def action(self, server_id, body, api=None, version='v2.1',
               microversion=None, project_id_in_url=False):
        api = api or self.api
        caller = client.TestOpenStackClient(
            api.auth_user,
            self._base_url(version,
                           api.project_id if project_id_in_url else None),
            project_id=api.project_id, roles=api.roles)
        caller.microversion = microversion
        response = caller.api_post(
            'servers/%s/action' % server_id, body, check_response_status=None)
        return response

    def server_task_state(self, server):
        server_id = server['id'] if isinstance(server, dict) else server
        return self.api_as('admin').get_server(server_id)[
            'OS-EXT-STS:task_state']

    def server_events(self, server, action):
        server_id = server['id'] if isinstance(server, dict) else server
        admin = self.api_as('admin')
        actions = admin.api_get(
            'servers/%s/os-instance-actions' % server_id).body[
            'instanceActions']
        matching = [a for a in actions if a['action'] == action]
        if not matching:
            return []
        detail = admin.api_get('servers/%s/os-instance-actions/%s' % (
            server_id, matching[0]['request_id'])).body['instanceAction']
        return [(event['event'], event['result'])
                for event in detail.get('events', ())]

    def instance(self, server):
        """The Instance object of a server, read from its cell."""
        server_id = server['id'] if isinstance(server, dict) else server
        ctxt = nova_context.get_admin_context()
        mapping = objects.InstanceMapping.get_by_instance_uuid(
            ctxt, server_id)
        with nova_context.target_cell(ctxt, mapping.cell_mapping) as cctxt:
            return objects.Instance.get_by_uuid(cctxt, server_id)

    def capture_debug_logs(self):
        return self.useFixture(DebugLogCapture())

    def load_wsgi_app(self, paste_config):
        return nova_wsgi.Loader(paste_config).load_app('osapi_compute')
