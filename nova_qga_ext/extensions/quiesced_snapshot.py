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

"""quiescedSnapshot: a snapshot whose guest filesystems are frozen, briefly.

The API side creates the image exactly as nova's createImage does, through
nova's compute API, with one more image property that marks the request
(:data:`QUIESCE_PROPERTY`). nova runs the snapshot in a long-task thread of
its own, where nothing of the request is left but that image; the wrapped
driver methods recognise the marked image there and change three things in
nova's live snapshot:

* the freeze is required: if it fails, the snapshot fails (nova would only
  log it), and nova's error path deletes the image and resets task_state;
* the guest is frozen only at the consistency point: nova freezes once the
  disk mirror has converged, right before ending the block job, but thaws
  only after redefining the domain; here the thaw follows the end of the
  block job at once;
* the freeze window and the number of frozen filesystems are measured and
  uploaded with the image as :data:`FREEZE_WINDOW_PROPERTY` and
  :data:`FROZEN_FILESYSTEMS_PROPERTY`.

A watchdog thaws the guest after ``[qga_ext] freeze_timeout`` even if the
snapshot thread is stuck, and nova-compute thaws at start-up any instance a
crash left frozen.

The marker is only an image property: a plain createImage whose metadata
sets it gets the same quiesced snapshot, under createImage's policy and
without the API's pre-check.
"""

import contextlib
import threading
import time

from lxml import etree
from nova.api.openstack import api_version_request
from nova.api.openstack import common
from nova.api.openstack.compute.schemas import servers as servers_schema
from nova.api.openstack import wsgi
from nova.api import validation
from nova.compute import api as compute
from nova.compute import utils as compute_utils
from nova import exception as nova_exception
from nova.image import glance
from nova import objects
from nova.policies import base as nova_policies
from nova.virt.libvirt import config as libvirt_config
from nova.virt.libvirt import driver as libvirt_driver
from oslo_config import cfg
from oslo_log import log as logging
from oslo_policy import policy
import webob.exc

from nova_qga_ext import agent
from nova_qga_ext.api import controller
from nova_qga_ext.extensions import base
from nova_qga_ext.i18n import _
from nova_qga_ext import policies
from nova_qga_ext import rpc
from nova_qga_ext.virt import driver as virt_driver

LOG = logging.getLogger(__name__)

ACTION = 'quiescedSnapshot'
#: The instance action event of the snapshot on the compute node.
EVENT = 'qga_ext_quiesced_snapshot'
RULE = policies.RULE_PREFIX + 'quiesced-snapshot'

#: Image properties. The first marks the request for the compute node; the
#: others are read by clients (``openstack server snapshot create --wait``).
PROPERTY_PREFIX = 'qga_ext_'
QUIESCE_PROPERTY = PROPERTY_PREFIX + 'quiesce'
QUIESCE_REQUIRED = 'required'
FREEZE_WINDOW_PROPERTY = PROPERTY_PREFIX + 'freeze_window_ms'
FROZEN_FILESYSTEMS_PROPERTY = PROPERTY_PREFIX + 'frozen_filesystems'

_PROPERTIES = (QUIESCE_PROPERTY, FREEZE_WINDOW_PROPERTY,
               FROZEN_FILESYSTEMS_PROPERTY)

FSFREEZE_COMMANDS = ('guest-fsfreeze-freeze', 'guest-fsfreeze-thaw',
                     'guest-fsfreeze-status')

_AGENT_CHANNEL = 'org.qemu.guest_agent.0'

# At start-up every running instance is probed; a hung agent must not delay
# nova-compute by the full agent timeout per instance.
_STARTUP_PROBE_TIMEOUT = 2.0

CONFIG_OPTS = [
    cfg.FloatOpt(
        'freeze_timeout',
        default=10.0,
        min=0.1,
        help='Seconds after which a watchdog thaws the guest filesystems of '
             'a quiesced snapshot, even if the snapshot is stuck; the '
             'snapshot then fails, because the disk copy can no longer be '
             'trusted to be consistent. The guest is frozen only from the '
             'moment the disk mirror has converged until its block job has '
             'ended, which takes milliseconds (plus the time the guest '
             'needs to flush its dirty data when freezing). Windows guests '
             'cannot hold a freeze longer than 10 seconds anyway: VSS '
             'aborts the shadow copy (VSS_E_HOLD_WRITES_TIMEOUT) and the '
             'thaw then fails, which also fails the snapshot; a larger '
             'value only helps Linux guests with a lot of unflushed data.'),
]

POLICY_RULES = [
    policy.DocumentedRuleDefault(
        name=RULE,
        check_str=nova_policies.PROJECT_MEMBER_OR_ADMIN,
        description='Create an image of a server while its filesystems are '
                    'frozen through the QEMU guest agent; fails instead of '
                    'taking an unfrozen snapshot.',
        operations=[{'method': 'POST',
                     'path': '/servers/{server_id}/action (%s)' % ACTION}],
        scope_types=['project']),
]

_BODY = servers_schema.create_image['properties']['createImage']
SCHEMA = {
    'type': 'object',
    'properties': {ACTION: _BODY},
    'required': [ACTION],
    'additionalProperties': False,
}


def _quiesce_failed(reason):
    return nova_exception.InstanceQuiesceFailed(reason=reason)


def _describe(error):
    if isinstance(error, agent.AgentError):
        return error.format_message()
    return '%s: %s' % (type(error).__name__, error)


def _live_snapshot_blocker():
    """Why nova would not take a live snapshot on this host, or None.

    Only the live snapshot has a consistency point to freeze at; nova
    falls back to a cold or a direct (RBD) snapshot in these cases.
    """
    conf = cfg.CONF
    if conf.libvirt.images_type in ('lvm', 'rbd'):
        return _('nova takes no live snapshot of %s-backed disks') % (
            conf.libvirt.images_type)
    if conf.ephemeral_storage_encryption.enabled:
        return _('nova takes no live snapshot with ephemeral storage '
                 'encryption')
    if conf.workarounds.disable_libvirt_livesnapshot:
        return _('live snapshots are disabled by [workarounds] '
                 'disable_libvirt_livesnapshot')
    return None


class FreezeWindow:
    """The one freeze of one snapshot: frozen once, thawed exactly once.

    The snapshot thread freezes and, normally, thaws; a watchdog thread
    thaws instead if the freeze outlives ``timeout``. Whatever goes wrong
    is kept in :attr:`error`, to fail the snapshot once nova has cleaned up.
    """

    def __init__(self, guest_agent, timeout, instance=None):
        self._agent = guest_agent
        self._timeout = timeout
        self._instance = instance
        self._guard = threading.Lock()
        self._frozen = False
        self._started = None
        self._watchdog = None
        self.filesystems = None
        #: From sending the freeze to the thaw's reply: the longest the
        #: guest can have been frozen.
        self.window_ms = None
        #: The part of the window spent flushing and freezing.
        self.freeze_ms = None
        self.error = None

    def freeze(self):
        """Freeze; raises InstanceQuiesceFailed after thawing on failure."""
        with self._guard:
            # Counted as frozen before asking: a freeze that timed out on
            # the host may still complete in the guest.
            self._frozen = True
            self._watchdog = threading.Timer(self._timeout, self._expire)
            self._watchdog.daemon = True
            self._watchdog.start()
            self._started = time.monotonic()
        try:
            self.filesystems = self._agent.fs_freeze()
            self.freeze_ms = self._elapsed_ms()
        # Anything but a nova exception would escape nova's cleanup before
        # it ends the block job and redefines the domain.
        except Exception as error:
            # The cause, even if the watchdog gave up on the freeze
            # meanwhile: its reason would claim a freeze that never was.
            self.error = _quiesce_failed(_(
                'the guest agent could not freeze the filesystems: %s') %
                _describe(error))
            self.thaw()
            raise self.error from None

    def thaw(self):
        """Thaw if frozen; a no-op otherwise. Never raises."""
        with self._guard:
            self._thaw()

    def _thaw(self):
        if not self._frozen:
            return
        self._frozen = False
        self._watchdog.cancel()
        try:
            self._agent.fs_thaw()
        # It runs in nova's cleanup, where it must not hide an error
        # already on its way, nor stop the cleanup.
        except Exception as error:
            # Windows VSS reports a freeze held too long only here.
            self._fail(_('the guest agent could not thaw the filesystems: '
                         '%s') % _describe(error))
            LOG.error('Thawing the guest filesystems failed: %s',
                      _describe(error), instance=self._instance)
        finally:
            self.window_ms = self._elapsed_ms()

    def _elapsed_ms(self):
        return round((time.monotonic() - self._started) * 1000, 1)

    def _fail(self, reason):
        if self.error is None:
            self.error = _quiesce_failed(reason)

    def _expire(self):
        with self._guard:
            if not self._frozen:
                return
            LOG.error('Thawing the guest filesystems, frozen for longer '
                      'than %s s', self._timeout, instance=self._instance)
            # A failed thaw records its own reason first.
            self._thaw()
            self._fail(_('the filesystems stayed frozen longer than '
                         '[qga_ext] freeze_timeout (%s s) and were thawed by '
                         'the watchdog') % self._timeout)


class _Snapshot:
    """A marked snapshot in progress in the current thread."""

    def __init__(self, driver, instance, freeze_timeout):
        self.instance = instance
        self.metadata = None
        self.window = FreezeWindow(driver.guest_agent(instance),
                                   freeze_timeout, instance)
        self._lock = driver.instance_lock(instance)
        self._held = contextlib.ExitStack()

    def freeze(self):
        # Other agent work on the instance waits for the freeze window
        # only, not for the disk copy.
        self._held.enter_context(self._lock)
        try:
            self.window.freeze()
        except BaseException:
            self._held.close()
            raise

    def thaw(self):
        self.window.thaw()
        self._held.close()


class QuiescedSnapshotController(controller.ActionController):

    def __init__(self, extension):
        super().__init__(extension)
        self.compute_api = _QuiescedSnapshotComputeAPI()
        _make_properties_non_inheritable(extension.conf)

    @wsgi.response(202)
    @wsgi.expected_errors((400, 403, 404, 409, 504))
    @wsgi.action(ACTION)
    @validation.schema(SCHEMA)
    def quiesced_snapshot(self, req, id, body):
        context = req.environ['nova.context']
        instance = self.get_instance(context, id, RULE)
        self.check_ready(instance)
        entity = body[ACTION]
        name = common.normalize_name(entity['name'])
        metadata = entity.get('metadata', {})
        reserved = sorted(key for key in metadata
                          if key.startswith(PROPERTY_PREFIX))
        if reserved:
            raise webob.exc.HTTPBadRequest(explanation=_(
                'Image properties starting with "%(prefix)s" are set by '
                'the service: %(keys)s.') % {'prefix': PROPERTY_PREFIX,
                                             'keys': ', '.join(reserved)})
        if not api_version_request.is_supported(req, '2.39'):
            common.check_img_metadata_properties_quota(context, metadata)
        bdms = objects.BlockDeviceMappingList.get_by_instance_uuid(
            context, instance.uuid)
        if compute_utils.is_volume_backed_instance(context, instance, bdms):
            # nova holds a volume-backed server frozen while cinder takes
            # every volume's snapshot; there is no consistency point to
            # shorten that to.
            raise webob.exc.HTTPConflict(explanation=_(
                'Quiesced snapshots of volume-backed servers are not '
                'supported; use createImage, which quiesces them while the '
                'volume snapshots are taken.'))
        self.call_compute(context, instance, 'check_quiesce')
        properties = dict(metadata)
        properties[QUIESCE_PROPERTY] = QUIESCE_REQUIRED
        try:
            image = self.compute_api.snapshot(context, instance, name,
                                              extra_properties=properties)
        except nova_exception.InstanceInvalidState as error:
            common.raise_http_conflict_for_instance_invalid_state(
                error, ACTION, id)
        except nova_exception.OverQuota as error:
            raise webob.exc.HTTPForbidden(explanation=error.format_message())
        image_id = str(image['id'])
        response = wsgi.ResponseObject({'image_id': image_id})
        response['Location'] = glance.API().generate_image_url(image_id,
                                                               context)
        return response


def _make_properties_non_inheritable(conf):
    """Keep our properties off the snapshots of servers booted from ours.

    nova copies the properties of a server's image into the server's
    snapshots. Inherited, the marker would force a quiesce on a plain
    createImage, and the measurements would describe another snapshot.
    Added to what the operator lists in ``[DEFAULT]
    non_inheritable_image_properties``, on the API nodes that create images.
    """
    listed = list(conf.non_inheritable_image_properties)
    missing = [name for name in _PROPERTIES if name not in listed]
    if missing:
        conf.set_override('non_inheritable_image_properties',
                          listed + missing)


class _QuiescedSnapshotComputeAPI(compute.API):
    """nova's compute API, recording the action under our name.

    The compute node's events attach to the request's action whatever its
    name, so ``openstack server event list`` shows a quiescedSnapshot with
    nova's compute_snapshot_instance event.
    """

    def _record_action_start(self, context, instance, action):
        super()._record_action_start(context, instance, ACTION)


class QuiescedSnapshotEndpoint:
    """Compute side of the API's pre-check."""

    target = rpc.TARGET

    def __init__(self, extension):
        self._extension = extension

    def check_quiesce(self, context, instance):
        self._extension.check(instance)


class QuiescedSnapshot(base.Extension):
    name = 'quiesced_snapshot'
    CONFIG_OPTS = CONFIG_OPTS
    POLICY_RULES = POLICY_RULES
    API_CONTROLLER = QuiescedSnapshotController
    DRIVER_METHODS = ('init_host', 'snapshot', '_create_snapshot_metadata',
                      '_live_snapshot', 'quiesce', 'unquiesce')

    def __init__(self, conf):
        super().__init__(conf)
        self._driver = None
        # nova runs each snapshot start to end in one thread (a green
        # thread in eventlet mode, where this local is green too).
        self._local = threading.local()

    def patch_driver(self, driver):
        self._driver = driver
        super().patch_driver(driver)

    def rpc_endpoint(self, driver):
        return QuiescedSnapshotEndpoint(self)

    def _current(self, instance):
        snapshot = getattr(self._local, 'snapshot', None)
        if snapshot is not None and snapshot.instance.uuid == instance.uuid:
            return snapshot
        return None

    def check(self, instance):
        """Raise unless a quiesced snapshot of the instance can start now.

        :raises InstanceQuiesceFailed: the host cannot, or the guest is
            frozen already.
        :raises InstanceAgentNotEnabled: (tagged) the agent is not
            connected, not answering, or has fsfreeze disabled.
        """
        blocker = _live_snapshot_blocker()
        if blocker:
            raise _quiesce_failed(blocker)
        try:
            self._driver._can_quiesce(instance, instance.image_meta)
        except nova_exception.InstanceQuiesceNotSupported as error:
            raise _quiesce_failed(error.format_message()) from None
        with virt_driver.agent_errors_as_nova_exceptions():
            guest_agent = self._driver.guest_agent(instance)
            guest_agent.require(*FSFREEZE_COMMANDS)
            if guest_agent.fs_freeze_status() == 'frozen':
                raise _quiesce_failed(_(
                    'the guest filesystems are frozen already, by someone '
                    'else'))

    # Driver methods: each gets the driver's original bound method first.

    def snapshot(self, original, context, instance, image_id,
                 update_task_state):
        image = self._driver._image_api.get(context, image_id)
        marked = image.get('properties', {}).get(QUIESCE_PROPERTY)
        if marked != QUIESCE_REQUIRED:
            return original(context, instance, image_id, update_task_state)
        # nova's own event ends when the snapshot starts; this one tells
        # "openstack server event show" how the snapshot itself ended.
        with compute_utils.EventReporter(context, EVENT, self.conf.host,
                                         instance.uuid):
            self._quiesced_snapshot(original, context, instance, image_id,
                                    update_task_state)

    def _quiesced_snapshot(self, original, context, instance, image_id,
                           update_task_state):
        # Checked again: the agent may have gone since the API asked, and
        # failing now spares copying the whole disk for nothing.
        self.check(instance)
        snapshot = _Snapshot(self._driver, instance,
                             self.conf.qga_ext.freeze_timeout)
        self._local.snapshot = snapshot
        try:
            original(context, instance, image_id, update_task_state)
        finally:
            self._local.snapshot = None
            snapshot.thaw()
        if snapshot.window.window_ms is None:
            raise _quiesce_failed(_('nova did not take a live snapshot, so '
                                    'there was no point to freeze at'))

    def _create_snapshot_metadata(self, original, image_meta, instance,
                                  *args, **kwargs):
        metadata = original(image_meta, instance, *args, **kwargs)
        snapshot = self._current(instance)
        if snapshot is not None:
            # The dict nova uploads with the image once the copy is done.
            snapshot.metadata = metadata
        return metadata

    def _live_snapshot(self, original, context, instance, guest, *args,
                       **kwargs):
        snapshot = self._current(instance)
        if snapshot is None:
            return original(context, instance, guest, *args, **kwargs)
        _thaw_when_block_job_ends(guest, snapshot)
        try:
            original(context, instance, guest, *args, **kwargs)
        finally:
            snapshot.thaw()
        window = snapshot.window
        if window.error is not None:
            raise window.error
        if window.window_ms is None:
            raise _quiesce_failed(_('nova did not freeze the guest'))
        LOG.info('Guest filesystems (%(count)s) were frozen for at most '
                 '%(ms).1f ms, %(freeze).1f ms of it to flush and freeze',
                 {'count': window.filesystems, 'ms': window.window_ms,
                  'freeze': window.freeze_ms}, instance=instance)
        snapshot.metadata['properties'].update({
            FREEZE_WINDOW_PROPERTY: '%.1f' % window.window_ms,
            FROZEN_FILESYSTEMS_PROPERTY: str(window.filesystems)})

    def quiesce(self, original, context, instance, image_meta):
        snapshot = self._current(instance)
        if snapshot is None:
            return original(context, instance, image_meta)
        # nova calls this once the mirror has converged: the consistency
        # point. A failure surfaces as InstanceQuiesceFailed, which nova
        # only logs; _live_snapshot raises it after nova's cleanup.
        snapshot.freeze()

    def unquiesce(self, original, context, instance, image_meta):
        if self._current(instance) is None:
            return original(context, instance, image_meta)
        # Thawed already, as soon as the block job ended.

    def init_host(self, original, host):
        original(host)
        self.thaw_frozen_guests()

    def thaw_frozen_guests(self):
        """Thaw every instance a crash left frozen; log each at WARNING.

        Runs before the compute service serves RPC, so no snapshot of ours
        can be freezing a guest meanwhile.
        """
        for guest in self._driver._host.list_guests():
            try:
                if not _has_connected_agent(guest.get_xml_desc()):
                    continue
                guest_agent = agent.GuestAgent(
                    guest._domain,
                    timeout=min(self.conf.qga_ext.agent_timeout,
                                _STARTUP_PROBE_TIMEOUT),
                    qemu=self._driver.qemu_api)
                if guest_agent.fs_freeze_status() != 'frozen':
                    continue
                count = guest_agent.fs_thaw()
            # libvirt as nova's driver sees it: fakelibvirt in tests.
            except (agent.AgentError,
                    libvirt_driver.libvirt.libvirtError) as error:
                LOG.warning('Could not check whether instance %(uuid)s is '
                            'frozen: %(error)s',
                            {'uuid': guest.uuid, 'error': error})
                continue
            LOG.warning('Thawed %(count)s filesystems of instance %(uuid)s, '
                        'found frozen at start-up; a snapshot was probably '
                        'interrupted.', {'count': count, 'uuid': guest.uuid})


def _has_connected_agent(xml):
    """Whether a domain is a nova instance whose agent channel is up.

    Answers from the XML, so guests without an agent cost no agent call.
    """
    doc = etree.fromstring(xml)
    if doc.find('./metadata/{%s}instance' % libvirt_config.NOVA_NS) is None:
        return False
    for target in doc.iterfind('./devices/channel/target'):
        if target.get('name') == _AGENT_CHANNEL:
            return target.get('state') != 'disconnected'
    return False


def _thaw_when_block_job_ends(guest, snapshot):
    """Make the guest's block devices thaw right after their job ends.

    nova ends the mirror with ``abort_job()`` and only then redefines the
    domain; the thaw is moved before the latter. ``guest`` is the Guest
    object of this snapshot alone. The first ``abort_job()``, a cleanup
    before the mirror starts, finds nothing frozen.
    """
    get_block_device = guest.get_block_device

    def get_block_device_thawing_after_job(disk):
        device = get_block_device(disk)
        abort_job = device.abort_job

        def abort_job_then_thaw(*args, **kwargs):
            try:
                return abort_job(*args, **kwargs)
            finally:
                snapshot.thaw()

        device.abort_job = abort_job_then_thaw
        return device

    guest.get_block_device = get_block_device_thawing_after_job
