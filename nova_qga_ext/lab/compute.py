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

"""nova's real driver on the lab's libvirt, without a compute service.

``qga_ext.LibvirtDriver`` runs against qemu:///system for a nova
``Instance`` whose uuid is a lab domain's: nova's own code down to libvirt,
the extensions applied, and only the image service kept local. The
functional tests and the benchmarks drive the compute side through it.
"""

import contextlib
import copy
import os
import shutil
from unittest import mock

import fixtures
import libvirt
from nova import objects
from nova.tests import fixtures as nova_fixtures
from nova.virt import fake as fake_virt
from oslo_config import cfg
from oslo_config import fixture as config_fixture

from nova_qga_ext import conf as qga_conf
from nova_qga_ext.extensions import manager
from nova_qga_ext.virt import driver as qga_driver

CONF = cfg.CONF

#: The compute host the endpoints believe they run on.
HOST = 'lab'

# What nova keeps of an image with the guest agent enabled.
_IMAGE_SYSTEM_METADATA = {'image_hw_qemu_guest_agent': 'yes',
                          'image_disk_format': 'qcow2',
                          'image_container_format': 'bare'}


class _StopThread(BaseException):
    """Ends a loop that only catches Exception."""


def end_connection_event_thread(driver):
    """End the libvirt connection-event thread of a driver's host.

    nova never ends it (see the note in
    nova.virt.libvirt.host.Host.cleanup); a real nova-compute exits the
    process anyway, but a test process goes on, and futurist joins its
    workers at exit. Closing the connection also ends the lifecycle events
    that libvirtd would go on sending for every domain.
    """
    def stop():
        raise _StopThread()
    host = driver._host
    host._conn_event_handler_queue.put(stop)
    conn, host._wrapped_conn = host._wrapped_conn, None
    if conn is not None:
        with contextlib.suppress(libvirt.libvirtError):
            conn.close()


class LocalImageService:
    """The calls nova's snapshot makes on the image API, kept on disk."""

    def __init__(self, directory):
        self.directory = directory
        self.images = {}

    def add(self, image_id, properties):
        self.images[image_id] = {'id': image_id, 'name': 'snap-' + image_id,
                                 'status': 'queued',
                                 'properties': dict(properties)}

    def get(self, context, image_id):
        return copy.deepcopy(self.images[image_id])

    def update(self, context, image_id, metadata, data=None,
               purge_props=False):
        image = self.images[image_id]
        image['properties'].update(metadata.pop('properties', {}))
        image.update(metadata)
        if data is not None:
            with open(self.path(image_id), 'wb') as f:
                shutil.copyfileobj(data, f)
        return copy.deepcopy(image)

    def path(self, image_id):
        return os.path.join(self.directory, image_id)


def lab_instance(guest, **fields):
    """A nova Instance for a lab guest (its image has the agent enabled)."""
    values = dict(uuid=guest.uuid, id=1, project_id='project',
                  user_id='user', kernel_id='', ramdisk_id='',
                  os_type='linux', image_ref='', key_data=None,
                  system_metadata=dict(_IMAGE_SYSTEM_METADATA))
    values.update(fields)
    return objects.Instance(**values)


class RealDriverFixture(fixtures.Fixture):
    """``qga_ext.LibvirtDriver`` on qemu:///system with ``extensions``.

    ``conf`` is the config fixture, for options a test changes later.

    ``driver.virtapi._compute`` stands in for the compute manager that
    serves the endpoints (its ``host`` is all the endpoints read), and
    instance-action events are not recorded, there is no database: the
    ``EventReporter`` calls are kept in ``events``, a mock.
    """

    def __init__(self, extensions, **qga_ext_options):
        super().__init__()
        self.extensions = list(extensions)
        self.qga_ext_options = qga_ext_options

    def _setUp(self):
        # nova's executors are process-wide; the driver's go at cleanup, so
        # that later nova test cases in this process start clean.
        self.useFixture(nova_fixtures.IsolatedExecutorFixture(
            'nova-qga-ext-lab-compute'))
        objects.register_all()
        # Every extension's options, so that a test may set those of any.
        qga_conf.register_opts(CONF)
        for extension_class in manager.installed().values():
            qga_conf.register_opts(CONF, extension_class.CONFIG_OPTS)
        self.workdir = self.useFixture(fixtures.TempDir()).path
        self.conf = conf = self.useFixture(config_fixture.Config(CONF))
        conf.config(virt_type='qemu', connection_uri='qemu:///system',
                    snapshots_directory=os.path.join(self.workdir,
                                                     'snapshots'),
                    group='libvirt')
        conf.config(instances_path=os.path.join(self.workdir, 'instances'),
                    state_path=self.workdir)
        conf.config(extensions=self.extensions, group='qga_ext',
                    **self.qga_ext_options)
        # nova's privileged helpers (chown of the snapshot) run in-process.
        self.useFixture(nova_fixtures.PrivsepFixture())
        self.events = self.useFixture(fixtures.MockPatch(
            'nova.compute.utils.EventReporter')).mock
        virtapi = fake_virt.FakeVirtAPI()
        virtapi._compute = mock.Mock(host=HOST, additional_endpoints=[])
        self.driver = qga_driver.LibvirtDriver(virtapi, False)
        self.addCleanup(end_connection_event_thread, self.driver)
        self.images = LocalImageService(self.workdir)
        self.driver._image_api = self.images
        self.endpoints = virtapi._compute.additional_endpoints
