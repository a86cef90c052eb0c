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

"""A whole Nova 34 cloud in one process, on the lab's real libvirtd.

The API (nova's paste pipelines with the ``qga_ext`` filter, served over
HTTP on a loopback port), conductor, scheduler, placement and a compute
service running ``qga_ext.LibvirtDriver`` on ``qemu:///system`` (TCG). The
plumbing nova's functional tests use is reused where it is not a fake of the
part under test: sqlite cell databases, oslo.messaging's fake transport,
placement's in-process app, neutron's fake (the servers have no network).
Images are files on disk, served to nova through its image API and, read
only, over HTTP as a Glance v2 endpoint so that the ``openstack`` CLI can
watch a snapshot become active.

The lab guest is booted by nova itself, as an AMI-style image: the lab's
kernel (aki) and initramfs (ari) plus its ext4 data disk as the root disk
(ami), which the guest's /init mounts at /data from /dev/vda. With
``hw_qemu_guest_agent=yes`` nova adds the agent channel.

Demo only: every API request is an admin of one project (there is no
keystone), and the servers listen on 127.0.0.1 only.

The caller must have run ``nova.monkey_patch.patch()`` before importing
nova (nova's tests and ``nova_qga_ext.lab.democloud`` do).
"""

import contextlib
import copy
import dataclasses
import datetime
import importlib.metadata
import json
import os
import re
import shutil
import socketserver
import subprocess
import tempfile
import threading
import time
from wsgiref import simple_server

import fixtures
import libvirt
from oslo_log import log as logging
from oslo_utils.fixture import uuidsentinel
import requests
import webob.dec
import webob.exc

from nova.api.openstack import wsgi_app
from nova.api import wsgi as nova_wsgi
from nova.compute import api as compute_api
from nova.compute import rpcapi as compute_rpcapi
from nova import conf as nova_conf
from nova import context as nova_context
from nova import objects
from nova.objects import base as objects_base
from nova.scheduler.client import report
from nova.scheduler import utils as scheduler_utils
from nova.tests import fixtures as nova_fixtures
from nova.tests.fixtures import glance as glance_fixture
from nova.tests.functional import fixtures as func_fixtures
from nova.virt.libvirt import host as nova_host

from nova_qga_ext.lab import compute as lab_compute
from nova_qga_ext.lab import guest as lab_guest

LOG = logging.getLogger(__name__)
CONF = nova_conf.CONF

PROJECT_ID = 'qga-demo'
USER_ID = 'admin'
COMPUTE_HOST = 'qga-compute'
FLAVOR_NAME = 'lab.tiny'
# Nova names domains after this; the prefix keeps them apart from the lab's
# own qgalab-* domains, the uuid apart from another cloud's on one libvirtd.
DOMAIN_PREFIX = 'qganova-'
# The microversion of every request: >= 2.37 for "networks": "none".
MICROVERSION = 'latest'
# The lab guest ignores root=. no_timer_check: under TCG on a busy host the
# kernel's IO-APIC timer check fails and panics (seen at load 15).
KERNEL_CMDLINE = 'console=ttyS0 no_timer_check panic=-1 quiet'

_PIPELINES = ('openstack_compute_api_v21',
              'openstack_compute_api_v21_legacy_v2_compatible')
_APP = 'osapi_compute_app_v21'
_AUTH = 'authtoken keystonecontext'
_FILTERS = '''
[filter:qga_noauth]
paste.filter_factory = nova_qga_ext.lab.cloud:noauth_filter_factory

[filter:qga_ext]
use = egg:nova-qga-ext#qga_ext
'''


class CloudError(Exception):
    pass


@dataclasses.dataclass(frozen=True)
class FsckResult:
    ok: bool
    detail: str
    files: dict  # root directory: name -> size in bytes (directories: None)


def fsck_image(path):
    """Check the ext4 filesystem of a disk image file (any qemu format).

    Converts it to raw, runs ``e2fsck -fn`` (read-only, forced) and lists
    the root directory with debugfs.
    """
    if not os.path.isfile(path):
        return FsckResult(False, 'no image file %s' % path, {})
    with tempfile.TemporaryDirectory() as tmp:
        raw = os.path.join(tmp, 'image.raw')
        subprocess.run(['qemu-img', 'convert', '-U', '-O', 'raw', path,
                        raw], check=True, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE)
        fsck = subprocess.run(['e2fsck', '-fn', raw], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
        listing = subprocess.run(['debugfs', '-R', 'ls -p /', raw],
                                 stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL, text=True)
    # ls -p lines: /inode/mode/uid/gid/name/size/
    files = {}
    for line in listing.stdout.splitlines():
        fields = line.split('/')
        if len(fields) >= 7:
            files[fields[5]] = int(fields[6]) if fields[6] else None
    summary = fsck.stdout.strip().splitlines()
    return FsckResult(fsck.returncode == 0, 'e2fsck exit code %d: %s' % (
        fsck.returncode, summary[-1] if summary else ''), files)


# The API pipeline

class NoAuthMiddleware(nova_wsgi.Middleware):
    """Every request is the admin of PROJECT_ID (nova 34 has no noauth2)."""

    @webob.dec.wsgify(RequestClass=nova_wsgi.Request)
    def __call__(self, req):
        req.environ['nova.context'] = nova_context.RequestContext(
            user_id=USER_ID, project_id=PROJECT_ID, is_admin=True,
            roles=['admin', 'member', 'reader'],
            remote_address=req.remote_addr,
            request_id=req.environ.get('openstack.request_id'))
        return self.application


def noauth_filter_factory(global_conf, **local_conf):
    return NoAuthMiddleware


def stock_paste_config():
    """Path of the api-paste.ini that the nova wheel installs."""
    dist = importlib.metadata.distribution('nova')
    for path in dist.files or ():
        if str(path).replace('\\', '/').endswith('etc/nova/api-paste.ini'):
            return str(dist.locate_file(path))
    raise CloudError('the nova distribution has no etc/nova/api-paste.ini')


def paste_config(stock):
    """nova's api-paste.ini text, without keystone, with the qga_ext filter.

    In both compute pipelines "authtoken keystonecontext" becomes the demo's
    no-auth filter and "qga_ext" goes right before the app, as
    etc/api-paste-qga-ext.ini tells operators to do.
    """
    lines = []
    section = None
    changed = set()
    for line in stock.splitlines(keepends=True):
        header = re.match(r'\s*\[(?:composite|pipeline):(\S+)\]', line)
        if line.lstrip().startswith('['):
            section = header.group(1) if header else None
        elif (section in _PIPELINES and
                re.match(r'\s*keystone\s*=', line) and
                _AUTH in line and line.rstrip().endswith(' ' + _APP)):
            line = line.replace(_AUTH, 'qga_noauth').replace(
                ' ' + _APP, ' qga_ext ' + _APP)
            changed.add(section)
        lines.append(line)
    if changed != set(_PIPELINES):
        raise CloudError('unexpected nova api-paste.ini: pipelines %s not '
                         'found' % ', '.join(sorted(set(_PIPELINES) -
                                                    changed)))
    return ''.join(lines) + _FILTERS


# HTTP servers

class _Handler(simple_server.WSGIRequestHandler):
    def log_message(self, fmt, *args):
        LOG.debug('%s %s', self.address_string(), fmt % args)


class _Server(socketserver.ThreadingMixIn, simple_server.WSGIServer):
    daemon_threads = True


class HTTPServer(fixtures.Fixture):
    """A WSGI app served on 127.0.0.1 by a thread; .url is its root URL."""

    def __init__(self, app, name, port=0):
        super().__init__()
        self.app = app
        self.name = name
        self.port = port

    def _setUp(self):
        self.server = simple_server.make_server(
            '127.0.0.1', self.port, self.app, server_class=_Server,
            handler_class=_Handler)
        self.port = self.server.server_port
        self.url = 'http://127.0.0.1:%d' % self.port
        thread = threading.Thread(target=self.server.serve_forever,
                                  name='%s-http' % self.name, daemon=True)
        thread.start()
        self.addCleanup(self.server.server_close)
        self.addCleanup(self.server.shutdown)


# Images

class FileImageService(glance_fixture.GlanceFixture):
    """nova's in-memory Glance fake, with image data kept in files.

    Nova downloads the kernel, ramdisk and root disk from here and uploads
    snapshots here; the files stay on disk for the caller to check.
    """

    def __init__(self, test, directory):
        super().__init__(test)
        self.directory = directory
        self._lock = threading.Lock()

    def setUp(self):
        super().setUp()
        # The fake's built-in images are of no use here.
        self.images.clear()

    def path(self, image_id):
        return os.path.join(self.directory, image_id)

    def _store(self, image_id, data):
        path = self.path(image_id)
        with open(path + '.part', 'wb') as f:
            if isinstance(data, (bytes, bytearray)):
                f.write(data)
            else:
                shutil.copyfileobj(data, f, 1024 * 1024)
        os.replace(path + '.part', path)
        return os.path.getsize(path)

    def download(self, context, image_id, data=None, dst_path=None,
                 trusted_certs=None):
        self.show(context, image_id)
        with open(self.path(image_id), 'rb') as src:
            if data:
                shutil.copyfileobj(src, data, 1024 * 1024)
            elif dst_path:
                with open(dst_path, 'wb') as dst:
                    shutil.copyfileobj(src, dst, 1024 * 1024)

    def create(self, context, metadata, data=None):
        with self._lock:
            if data is None:
                # As Glance: a snapshot's image is active only once nova
                # has uploaded its data (the fake says active at once).
                metadata = dict(metadata, status=metadata.get('status',
                                                              'queued'))
            image = super().create(context, metadata)
            if data is not None:
                image['size'] = self._store(image['id'], data)
            return copy.deepcopy(image)

    def update(self, context, image_id, metadata, data=None,
               purge_props=False):
        with self._lock:
            image = super().update(context, image_id, metadata,
                                   purge_props=purge_props)
            if data is not None:
                image['size'] = self._store(image_id, data)
                image['status'] = 'active'
            image['updated_at'] = datetime.datetime.now(
                datetime.timezone.utc)
            return copy.deepcopy(image)

    def delete(self, context, image_id):
        with self._lock:
            super().delete(context, image_id)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path(image_id))


def glance_v2_view(image):
    """An image of nova's image API as Glance v2 shows it."""
    view = {k: v for k, v in image.items() if k != 'properties'}
    view.update(image.get('properties') or {})
    for key, value in view.items():
        if isinstance(value, datetime.datetime):
            view[key] = value.strftime('%Y-%m-%dT%H:%M:%SZ')
    view.setdefault('visibility', 'private')
    view['self'] = '/v2/images/%s' % image['id']
    view['file'] = '/v2/images/%s/file' % image['id']
    view['schema'] = '/v2/schemas/image'
    return view


class GlanceReadOnlyApp:
    """GET /v2/images[/{id}] of a FileImageService, for the CLI."""

    def __init__(self, images):
        self.images = images

    @webob.dec.wsgify
    def __call__(self, req):
        path = req.path_info.rstrip('/')
        if req.method != 'GET':
            raise webob.exc.HTTPMethodNotAllowed()
        if path in ('', '/v2'):
            body = {'versions': [{'id': 'v2.16', 'status': 'CURRENT',
                                  'links': [{'rel': 'self',
                                             'href': req.host_url + '/v2/'}]}]}
        elif path == '/v2/images':
            body = {'images': [glance_v2_view(i)
                               for i in self.images.images.values()]}
        else:
            match = re.match(r'^/v2/images/([^/]+)$', path)
            image = match and self.images.images.get(match.group(1))
            if not image:
                raise webob.exc.HTTPNotFound()
            body = glance_v2_view(image)
        return webob.Response(json=body, content_type='application/json')


# The cloud

class Cloud(fixtures.Fixture):
    """Nova 34 in this process on the lab's libvirtd; see the module doc.

    Attributes once set up: ``url`` (compute API root, e.g.
    ``http://127.0.0.1:PORT``), ``image_url`` (Glance v2 endpoint),
    ``compute`` (the compute service), ``driver`` (its
    ``qga_ext.LibvirtDriver``), ``images`` (FileImageService),
    ``timings`` (seconds per phase).
    """

    def __init__(self, lab, workdir=None, api_port=0, image_port=0,
                 debug=False):
        super().__init__()
        self.lab = lab
        self.workdir = workdir
        self.api_port = api_port
        self.image_port = image_port
        self.debug = debug
        self.timings = {}
        self.session = requests.Session()

    # Helpers with the names nova's fixtures expect of a test case.

    def flags(self, **kw):
        group = kw.pop('group', None)
        for name, value in kw.items():
            CONF.set_override(name, value, group)
            self.addCleanup(CONF.clear_override, name, group)

    def stub_out(self, old, new):
        self.useFixture(fixtures.MonkeyPatch(old, new))

    @contextlib.contextmanager
    def _timed(self, phase):
        started = time.monotonic()
        yield
        self.timings[phase] = time.monotonic() - started
        LOG.info('%s: %.1f s', phase, self.timings[phase])

    def _setUp(self):
        with self._timed('nova up'):
            self._configure()
            self._databases()
            self._outside_services()
            self._api()
            self._services()
            self._lab_images()
        self.server_ids = []
        # Before the services stop: nova undefines the domains itself.
        self.addCleanup(self._delete_servers)

    @staticmethod
    def _reset_nova_globals():
        # Process-wide caches that an earlier cloud (or nova test case) in
        # this process left filled, reset the way nova.test.TestCase does.
        objects.register_all()
        objects_base.NovaObject.indirection_api = None
        objects.Service.clear_min_version_cache()
        compute_api.CELLS = []
        nova_context.reset_globals()
        compute_rpcapi.reset_globals()
        scheduler_utils.reset_globals()
        report.PLACEMENTCLIENT = None
        wsgi_app.init_global_data.reset()
        wsgi_app.init_application.reset()

    def _configure(self):
        self._reset_nova_globals()
        # nova's executors are process-wide; this shuts down ours at the
        # end (and lets later nova test cases in this process start clean).
        self.useFixture(nova_fixtures.IsolatedExecutorFixture(
            'nova-qga-ext-cloud'))
        if self.workdir is None:
            parent = os.path.join(self.lab.workdir, 'clouds')
            os.makedirs(parent, exist_ok=True)
            self.workdir = self.useFixture(
                fixtures.TempDir(rootdir=parent)).path
        os.makedirs(self.workdir, exist_ok=True)
        # Nova's sqlite files (tempfile) land here and go with the fixture.
        self.useFixture(fixtures.EnvironmentVariable(
            'TMPDIR', self._dir('tmp')))
        tempfile.tempdir = None
        self.addCleanup(setattr, tempfile, 'tempdir', None)
        self.useFixture(nova_fixtures.ConfFixture(CONF))
        self.flags(host=COMPUTE_HOST, my_ip='127.0.0.1',
                   state_path=self._dir('state'),
                   instances_path=self._dir('instances'),
                   compute_driver='qga_ext.LibvirtDriver',
                   instance_name_template=DOMAIN_PREFIX + '%(uuid)s',
                   debug=self.debug)
        self.flags(group='libvirt', virt_type='qemu',
                   connection_uri='qemu:///system', cpu_mode='none',
                   images_type='qcow2')
        self.flags(group='oslo_concurrency', lock_path=self._dir('locks'))
        self.flags(group='vnc', enabled=False)
        self.flags(group='spice', enabled=False)
        self.flags(group='api', response_validation='warn')
        paste = os.path.join(self.workdir, 'api-paste.ini')
        with open(stock_paste_config()) as stock:
            text = paste_config(stock.read())
        with open(paste, 'w') as f:
            f.write(text)
        self.flags(group='wsgi', api_paste_config=paste)

    def _dir(self, name):
        path = os.path.join(self.workdir, name)
        os.makedirs(path, exist_ok=True)
        return path

    def _databases(self):
        self.useFixture(nova_fixtures.RPCFixture())
        self.useFixture(nova_fixtures.Database(database='api'))
        # Cells v2 as nova.test.TestCase sets it up: cell0 and cell1.
        cells = nova_fixtures.CellDatabases()
        ctxt = nova_context.get_admin_context()
        self.cell_mappings = {}
        for name, uuid in (('cell0', objects.CellMapping.CELL0_UUID),
                           ('cell1', uuidsentinel.cell1)):
            cell = objects.CellMapping(
                context=ctxt, uuid=uuid, name=name,
                transport_url='fake://nowhere/', database_connection=uuid)
            cell.create()
            self.cell_mappings[name] = cell
            cells.add_cell_database(uuid, default=(name == 'cell1'))
        self.useFixture(cells)

    def _outside_services(self):
        # Placement is reached through its in-process app, not a catalog.
        self.useFixture(nova_fixtures.OpenStackSDKFixture())
        self.placement = self.useFixture(func_fixtures.PlacementFixture())
        self.useFixture(nova_fixtures.NeutronFixture(self))
        self.images = FileImageService(self, self._dir('images'))
        self.useFixture(self.images)
        # Nova calls privsep'd functions in this process: it runs as root.
        self.useFixture(nova_fixtures.PrivsepFixture())

    def _api(self):
        app = nova_wsgi.Loader().load_app('osapi_compute')
        wsgi_app._setup_service(CONF.host, 'osapi_compute')
        self.api_server = self.useFixture(
            HTTPServer(app, 'nova-api', self.api_port))
        self.url = self.api_server.url
        self.image_server = self.useFixture(HTTPServer(
            GlanceReadOnlyApp(self.images), 'glance', self.image_port))
        self.image_url = self.image_server.url + '/v2'

    def _own_domains_only(self):
        # The lab's libvirtd also runs lab guests of other processes (tests
        # running in parallel); nova assumes it owns the hypervisor and
        # would refuse to start ("My hypervisor has existing instances")
        # or power-sync them. Show it only the domains of this cloud.
        real = nova_host.Host.list_instance_domains
        marker = CONF.instances_path + '/'

        def ours(dom):
            try:
                return (dom.name().startswith(DOMAIN_PREFIX) and
                        marker in dom.XMLDesc(0))
            except libvirt.libvirtError:
                return False

        def list_instance_domains(host, only_running=True):
            return [d for d in real(host, only_running) if ours(d)]

        self.useFixture(fixtures.MonkeyPatch(
            'nova.virt.libvirt.host.Host.list_instance_domains',
            list_instance_domains))

    def _services(self):
        self._own_domains_only()
        self.useFixture(nova_fixtures.ServiceFixture('conductor'))
        self.useFixture(nova_fixtures.ServiceFixture('scheduler'))
        self.lab.start_libvirtd()
        cell = self.cell_mappings['cell1']
        # Runs after the compute service is killed.
        self.addCleanup(self._end_connection_event_thread)
        self.compute = self.useFixture(nova_fixtures.ServiceFixture(
            'compute', COMPUTE_HOST, cell=cell,
            topic_alt='compute-alt')).service
        # The nova-manage cell_v2 discover_hosts step.
        ctxt = nova_context.get_admin_context()
        objects.HostMapping(context=ctxt, host=COMPUTE_HOST,
                            cell_mapping=cell).create()
        with nova_context.target_cell(ctxt, cell) as cctxt:
            for node in objects.ComputeNodeList.get_all_by_host(
                    cctxt, COMPUTE_HOST):
                node.mapped = 1
                node.save()
        self.driver = self.compute.manager.driver
        # Domains nova leaves behind (it should leave none) go before the
        # lab considers stopping libvirtd.
        self.addCleanup(self._destroy_leftover_domains)

    def _end_connection_event_thread(self):
        driver = getattr(self, 'driver', None)
        if driver is not None:
            lab_compute.end_connection_event_thread(driver)

    def _lab_images(self):
        image = self.lab.build_guest()
        ctxt = self.admin_context()
        with open(image.kernel, 'rb') as f:
            kernel = self.images.create(ctxt, {
                'name': 'qgalab-kernel', 'disk_format': 'aki',
                'container_format': 'aki', 'is_public': True}, data=f)
        with open(image.initrd, 'rb') as f:
            ramdisk = self.images.create(ctxt, {
                'name': 'qgalab-initrd', 'disk_format': 'ari',
                'container_format': 'ari', 'is_public': True}, data=f)
        # AMI root disks are raw: the lab's ext4 data disk, unpacked.
        raw = os.path.join(self.workdir, 'qgalab-root.raw')
        subprocess.run(['qemu-img', 'convert', '-f', 'qcow2', '-O', 'raw',
                        image.data_template, raw], check=True,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        with open(raw, 'rb') as f:
            root = self.images.create(ctxt, {
                'name': 'qgalab', 'disk_format': 'ami',
                'container_format': 'ami', 'is_public': True,
                'properties': {
                    'kernel_id': kernel['id'], 'ramdisk_id': ramdisk['id'],
                    'os_command_line': KERNEL_CMDLINE,
                    'hw_qemu_guest_agent': 'yes',
                    'architecture': 'x86_64'}}, data=f)
        os.unlink(raw)
        self.image_id = root['id']
        flavor = self.request('POST', '/flavors', {'flavor': {
            'name': FLAVOR_NAME, 'ram': 256, 'vcpus': 1, 'disk': 0}})
        self.flavor_id = flavor['flavor']['id']

    def admin_context(self):
        return nova_context.RequestContext(
            USER_ID, PROJECT_ID, is_admin=True,
            roles=['admin', 'member', 'reader'])

    # The API, over HTTP

    def request(self, method, path, body=None, expect=None,
                microversion=MICROVERSION):
        """One compute API request; returns the decoded JSON (or {})."""
        response = self.session.request(
            method, self.url + '/v2.1' + path, json=body, timeout=300,
            headers={'OpenStack-API-Version': 'compute %s' % microversion})
        if expect is None and response.status_code >= 400 or (
                expect is not None and response.status_code != expect):
            raise CloudError('%s %s: %d %s' % (
                method, path, response.status_code, response.text[:2000]))
        return response.json() if response.content else {}

    def boot_lab_server(self, name='lab', timeout=300):
        """Boot the lab guest through nova and wait until qemu-ga answers.

        Returns the server dict; records 'spawn' (API request to ACTIVE) and
        'spawn to agent' (API request to the first guest-ping through the
        driver's guest_agent()) in timings.
        """
        started = time.monotonic()
        server = self.request('POST', '/servers', {'server': {
            'name': name, 'imageRef': self.image_id,
            'flavorRef': self.flavor_id, 'networks': 'none'}})['server']
        self.server_ids.append(server['id'])
        server = self.wait_for_status(server['id'], 'ACTIVE', timeout)
        self.timings['spawn'] = time.monotonic() - started
        agent = self.driver.guest_agent(self.instance(server['id']),
                                        timeout=1)
        deadline = started + timeout
        while True:
            try:
                agent.ping()
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise CloudError('the agent of server %s did not answer '
                                     'in %d s; console:\n%s' % (
                                         server['id'], timeout,
                                         self.console(server['id'])))
                time.sleep(0.1)
        self.timings['spawn to agent'] = time.monotonic() - started
        LOG.info('server %s: ACTIVE after %.1f s, agent after %.1f s',
                 server['id'], self.timings['spawn'],
                 self.timings['spawn to agent'])
        return server

    def wait_for_status(self, server_id, status, timeout=300):
        deadline = time.monotonic() + timeout
        while True:
            server = self.request('GET', '/servers/%s' % server_id)['server']
            if server['status'] == status:
                return server
            if server['status'] == 'ERROR':
                raise CloudError('server %s went to ERROR: %s' % (
                    server_id, server.get('fault')))
            if time.monotonic() > deadline:
                raise CloudError('server %s still %s after %d s' % (
                    server_id, server['status'], timeout))
            time.sleep(0.2)

    def delete_server(self, server_id, timeout=120):
        """Delete a server through the API and wait until it is gone."""
        url = self.url + '/v2.1/servers/%s' % server_id
        response = self.session.delete(url, timeout=60)
        if response.status_code not in (204, 404):
            raise CloudError('DELETE server %s: %d %s' % (
                server_id, response.status_code, response.text[:2000]))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.session.get(url, timeout=60).status_code == 404:
                with contextlib.suppress(ValueError):
                    self.server_ids.remove(server_id)
                return
            time.sleep(0.2)
        raise CloudError('server %s not deleted after %d s' % (
            server_id, timeout))

    def _delete_servers(self):
        for server_id in list(self.server_ids):
            try:
                self.delete_server(server_id)
            except Exception:
                LOG.exception('could not delete server %s', server_id)

    def task_state(self, server_id):
        server = self.request('GET', '/servers/%s' % server_id)['server']
        return server['OS-EXT-STS:task_state']

    # Direct views of a server, beside the API

    def instance(self, server_id):
        ctxt = self.admin_context()
        with nova_context.target_cell(
                ctxt, self.cell_mappings['cell1']) as cctxt:
            return objects.Instance.get_by_uuid(cctxt, server_id)

    def domain(self, server_id):
        return self.lab.connect().lookupByUUIDString(server_id)

    def lab_guest(self, server_id):
        """The server's domain as a LabGuest: raw qemu-ga, beside nova."""
        directory = os.path.join(CONF.instances_path, server_id)
        return lab_guest.LabGuest(
            self.domain(server_id), directory,
            os.path.join(directory, 'disk'),
            os.path.join(directory, 'console.log'), None, True)

    def console(self, server_id):
        path = os.path.join(CONF.instances_path, server_id, 'console.log')
        with contextlib.suppress(OSError), open(path, 'rb') as f:
            return f.read()[-4000:].decode('utf-8', 'replace')
        return ''

    def _destroy_leftover_domains(self):
        marker = CONF.instances_path + '/'
        conn = self.lab.connect()
        for dom in conn.listAllDomains():
            if not dom.name().startswith(DOMAIN_PREFIX):
                continue
            with contextlib.suppress(libvirt.libvirtError):
                if marker not in dom.XMLDesc(0):
                    continue
                LOG.warning('destroying domain %s left by nova', dom.name())
                if dom.isActive():
                    dom.destroy()
                dom.undefine()

    # The openstack CLI

    def clouds_yaml(self, path, name='qga-demo'):
        """Write a clouds.yaml for the openstack CLI; returns the cloud name.

        keystoneauth's "none" plugin sends no token; the endpoints are
        overridden per service since there is no catalog.
        """
        config = {'clouds': {name: {
            'auth_type': 'none',
            'auth': {'endpoint': self.url + '/v2.1'},
            'compute_endpoint_override': self.url + '/v2.1',
            'image_endpoint_override': self.image_url,
            'image_api_version': '2',
        }}}
        with open(path, 'w') as f:
            json.dump(config, f, indent=2)
        return name
