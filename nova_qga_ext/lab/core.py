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

"""The lab: a real libvirtd running TCG guests with the real qemu-ga."""

import contextlib
import fcntl
import os
import re
import shutil
import subprocess
import time

import libvirt
from oslo_log import log as logging

from nova_qga_ext.lab import domain as lab_domain
from nova_qga_ext.lab import guest as lab_guest
from nova_qga_ext.lab import image as lab_image
from nova_qga_ext.lab import install as lab_install
from nova_qga_ext.lab import libvirtd

LOG = logging.getLogger(__name__)

DEFAULT_WORKDIR = '/var/tmp/nova-qga-ext-lab'
# Every domain the lab creates is named with this prefix; teardown and the
# stale-domain cleanup touch nothing else (except on a libvirtd the lab
# started itself, which holds only lab-driven domains).
DOMAIN_PREFIX = 'qgalab-'
DEFAULT_DATA_DISK_MB = 32


def _ignore_libvirt_error(_ctx, _err):
    # libvirt-python's default handler prints every error to stderr, even
    # those the caller catches and expects.
    pass


def _version(number):
    return '%d.%d.%d' % (number // 1000000, number // 1000 % 1000,
                         number % 1000)


class Lab:
    """One host's lab: workdir, guest image, libvirtd and the guests.

    Several processes may use the same workdir at once (a shared libvirtd,
    images built once); each tears down only what it created.
    """

    def __init__(self, workdir=None, agent_log=False):
        self.workdir = os.path.abspath(
            workdir or os.environ.get('QGA_LAB_DIR') or DEFAULT_WORKDIR)
        self.pidfile = os.path.join(self.workdir, 'libvirtd.pid')
        self.logfile = os.path.join(self.workdir, 'libvirtd.log')
        self.images_dir = os.path.join(self.workdir, 'images')
        self.guests_dir = os.path.join(self.workdir, 'guests')
        # Timestamped agent traffic in libvirtd.log, to measure e.g. the
        # freeze window; off by default because it logs every agent
        # command's arguments, passwords included. Takes effect only if
        # this Lab starts libvirtd.
        self.agent_log = agent_log
        self.image = None
        self.started_libvirtd = False
        self._conn = None
        self._guests = {}

    # Host

    @contextlib.contextmanager
    def _locked(self):
        os.makedirs(self.workdir, exist_ok=True)
        with open(os.path.join(self.workdir, 'lab.lock'), 'w') as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def install(self):
        """apt packages, libvirt-qemu user, qemu.conf; quick if done."""
        return lab_install.install()

    def build_guest(self):
        """Build or reuse the guest image; returns a GuestImage."""
        if self.image is None:
            with self._locked():
                self.image = lab_image.build(self.images_dir,
                                             DEFAULT_DATA_DISK_MB)
        return self.image

    def data_template(self, size_mb=DEFAULT_DATA_DISK_MB, fill_mb=0):
        """Path of an ext4 data disk template of size_mb MiB, empty or with
        fill_mb MiB of data in /fill.
        """
        image = self.build_guest()
        with self._locked():
            return lab_image.data_template(image.directory, size_mb, fill_mb)

    def _write_libvirtd_conf(self):
        path = os.path.join(self.workdir, 'libvirtd.conf')
        lines = ['log_outputs = "3:file:%s"' % self.logfile]
        if self.agent_log:
            lines = ['log_filters = "1:qemu.qemu_agent"',
                     'log_outputs = "1:file:%s"' % self.logfile]
        with open(path, 'w') as f:
            f.write('\n'.join(lines) + '\n')
        return path

    def start_libvirtd(self):
        """Make sure a libvirtd answers; start one if none does.

        A daemon recorded in the workdir's pid file (an earlier lab run's)
        or one started by someone else is used as it is.
        """
        with self._locked():
            pid = libvirtd.read_pid(self.pidfile)
            if pid is not None:
                libvirtd.wait_ready(pid=pid)
                return
            if libvirtd.responds():
                LOG.info('Using a libvirtd the lab did not start')
                return
            started = time.monotonic()
            try:
                pid = libvirtd.start(self.pidfile, self.logfile,
                                     self._write_libvirtd_conf())
            except libvirtd.LibvirtdError:
                # Lost a race with a libvirtd started for another workdir.
                if libvirtd.responds():
                    return
                raise
            self.started_libvirtd = True
            LOG.info('Started libvirtd %d in %.1f s', pid,
                     time.monotonic() - started)

    def stop_libvirtd(self):
        """Destroy every domain on the lab's libvirtd, then stop it.

        Stopping libvirtd leaves QEMU processes running, so the domains
        go first. Returns True if a daemon was stopped.
        """
        with self._locked():
            if libvirtd.read_pid(self.pidfile) is None:
                return False
            self._destroy_domains(lambda name: True)
            self._close()
            stopped = libvirtd.stop(self.pidfile)
            self.started_libvirtd = False
            return stopped

    def kill_stray_qemu(self):
        """SIGKILL QEMU processes started for this workdir's guests.

        Only for when no libvirtd runs any more: one that died without
        destroying its domains leaves them behind. Returns the pids killed.
        """
        killed = []
        for entry in os.listdir('/proc'):
            if not entry.isdigit():
                continue
            try:
                with open('/proc/%s/cmdline' % entry, 'rb') as f:
                    argv = f.read().split(b'\0')
            except OSError:
                continue
            ours = any(self.workdir.encode() + b'/' in a for a in argv)
            if argv[0].endswith(b'qemu-system-x86_64') and ours:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(entry), 9)
                    killed.append(int(entry))
        return killed

    def connect(self):
        """The lab's libvirt connection (qemu:///system), opened once."""
        if self._conn is None or not self._conn.isAlive():
            libvirt.registerErrorHandler(_ignore_libvirt_error, None)
            self._conn = libvirt.open(libvirtd.URI)
        return self._conn

    def _close(self):
        if self._conn is not None:
            with contextlib.suppress(libvirt.libvirtError):
                self._conn.close()
            self._conn = None

    def versions(self):
        """libvirt, QEMU and qemu-ga versions, e.g. {'libvirt': '9.0.0'}."""
        conn = self.connect()
        out = subprocess.run(['qemu-ga', '--version'], stdout=subprocess.PIPE,
                             text=True).stdout
        match = re.search(r'(\d+\.\d+\.\d+)', out)
        return {'libvirt': _version(conn.getLibVersion()),
                'qemu': _version(conn.getVersion()),
                'qemu-ga': match.group(1) if match else 'unknown'}

    # Guests

    @staticmethod
    def domain_name(name):
        return name if name.startswith(DOMAIN_PREFIX) else DOMAIN_PREFIX + name

    def domain_xml(self, name, *, agent=True, block_rpcs=(), disk=None,
                   control_socket=None, console_log=None, memory_mb=256):
        """XML for a lab guest booting this lab's kernel and initrd."""
        image = self.build_guest()
        name = self.domain_name(name)
        return lab_domain.domain_xml(
            name, image.kernel, image.initrd,
            console_log or os.path.join(self.guests_dir, name, 'console.log'),
            disk=disk, agent=agent, block_rpcs=block_rpcs,
            control_socket=control_socket, memory_mb=memory_mb)

    def _create(self, name, agent=True, block_rpcs=(),
                data_disk_mb=DEFAULT_DATA_DISK_MB, data_fill_mb=0,
                memory_mb=256):
        conn = self.connect()
        name = self.domain_name(name)
        self._destroy_domains(lambda n: n == name)
        directory = os.path.join(self.guests_dir, name)
        shutil.rmtree(directory, ignore_errors=True)
        os.makedirs(directory)
        with open(os.path.join(directory, 'owner'), 'w') as f:
            f.write(str(os.getpid()))
        disk = os.path.join(directory, 'data.qcow2')
        shutil.copyfile(self.data_template(data_disk_mb, data_fill_mb), disk)
        console_log = os.path.join(directory, 'console.log')
        control = os.path.join(directory, 'control.sock')
        if len(control) > 100:
            raise lab_guest.LabError('workdir path too long for a socket: %s'
                                     % control)
        xml = self.domain_xml(name, agent=agent, block_rpcs=block_rpcs,
                              disk=disk, control_socket=control,
                              console_log=console_log, memory_mb=memory_mb)
        dom = conn.createXML(xml, 0)
        guest = lab_guest.LabGuest(dom, directory, disk, console_log,
                                   control, agent)
        self._guests[name] = guest
        return guest

    def boot(self, name, *, agent=True, block_rpcs=(),
             data_disk_mb=DEFAULT_DATA_DISK_MB, data_fill_mb=0, wait=True,
             memory_mb=256, timeout=lab_guest.BOOT_TIMEOUT):
        """Boot a transient guest with its own copy of a data disk, empty
        or with data_fill_mb MiB of data in /data/fill.

        name gets the lab prefix. A domain of the same name (left over by
        a crashed run) is destroyed first. With wait, returns once the
        agent answers guest-ping (or, without an agent, once /init is
        done), with boot_seconds set.
        """
        return self.boot_many([dict(name=name, agent=agent,
                                    block_rpcs=block_rpcs,
                                    data_disk_mb=data_disk_mb,
                                    data_fill_mb=data_fill_mb,
                                    memory_mb=memory_mb)],
                              wait=wait, timeout=timeout)[0]

    def boot_many(self, specs, wait=True, timeout=lab_guest.BOOT_TIMEOUT):
        """Boot several guests at once and wait for all of them.

        specs: names, or dicts of boot() arguments with a 'name' key.
        Waiting polls the guests in turn from this thread, so it works the
        same under eventlet's monkey patching.
        """
        self.start_libvirtd()
        guests = []
        try:
            for spec in specs:
                spec = {'name': spec} if isinstance(spec, str) else spec
                guests.append((time.monotonic(), self._create(**spec)))
            if wait:
                pending = list(guests)
                while pending:
                    for item in list(pending):
                        started, guest = item
                        if guest.is_up(started, timeout):
                            guest.boot_seconds = time.monotonic() - started
                            pending.remove(item)
                    if pending:
                        time.sleep(lab_guest.POLL_INTERVAL)
        except BaseException:
            for _started, guest in guests:
                self.destroy(guest)
            raise
        return [guest for _started, guest in guests]

    def destroy(self, guest):
        """Destroy one guest of this lab and delete its files."""
        guest.destroy()
        self._guests.pop(guest.name, None)

    def _destroy_domains(self, wanted):
        try:
            conn = self.connect()
        except libvirt.libvirtError:
            return []  # no libvirtd, so no domains
        destroyed = []
        # Inactive ones too: nova's live snapshot makes a lab domain
        # persistent, and destroying it then leaves its definition.
        for dom in conn.listAllDomains(0):
            name = dom.name()
            if wanted(name):
                for operation in (dom.destroy, dom.undefine):
                    with contextlib.suppress(libvirt.libvirtError):
                        operation()
                destroyed.append(name)
                guest = self._guests.pop(name, None)
                shutil.rmtree(guest.directory if guest else
                              os.path.join(self.guests_dir, name),
                              ignore_errors=True)
        return destroyed

    def _owner(self, name):
        try:
            with open(os.path.join(self.guests_dir, name, 'owner')) as f:
                return int(f.read())
        except (OSError, ValueError):
            return None

    def destroy_lab_domains(self, force=False):
        """Destroy this workdir's domains whose booting process is gone.

        That is what a crashed run or ``nova-qga-ext-lab boot`` leaves.
        Guests of live processes (a concurrent test run) are kept unless
        force; lab domains of other workdirs are always left alone.
        """
        marker = self.workdir + '/'

        def stale(name):
            if not name.startswith(DOMAIN_PREFIX):
                return False
            try:
                xml = self.connect().lookupByName(name).XMLDesc(0)
            except libvirt.libvirtError:
                return False
            owner = self._owner(name)
            alive = (owner is not None and owner != os.getpid() and
                     libvirtd.alive(owner))
            return marker in xml and (force or not alive)

        return self._destroy_domains(stale)

    def active_domains(self):
        """Names of the running domains, if a libvirtd answers."""
        try:
            conn = self.connect()
        except libvirt.libvirtError:
            return []
        return [d.name() for d in conn.listAllDomains(
            libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)]

    def teardown(self):
        """Destroy this Lab's guests; stop libvirtd if this Lab started it.

        A libvirtd that still runs other domains (another process's) is
        left running.
        """
        for guest in list(self._guests.values()):
            with contextlib.suppress(libvirt.libvirtError):
                self.destroy(guest)
        if self.started_libvirtd:
            others = self.active_domains()
            if others:
                LOG.warning('Leaving libvirtd running for domains %s',
                            ', '.join(others))
            else:
                self.stop_libvirtd()
        self._close()
