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

"""The lab itself: real libvirtd, TCG guests, real qemu-ga and chpasswd."""

import os
import subprocess
import time
from xml.etree import ElementTree as etree

import fixtures
import libvirt
import testtools

from nova_qga_ext import lab as qga_lab
from tests.functional import lab as lab_fixtures


def _qemu_pids(domain_name):
    pids = []
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            try:
                with open('/proc/%s/cmdline' % entry, 'rb') as f:
                    cmdline = f.read()
            except OSError:
                continue
            if b'qemu-system' in cmdline and \
                    b'guest=%s,' % domain_name.encode() in cmdline:
                pids.append(int(entry))
    return pids


class SharedGuestTest(testtools.TestCase):
    """Read-only or self-restoring checks on the shared guest."""

    def setUp(self):
        super().setUp()
        self.guest = lab_fixtures.shared_guest()

    def test_booted_with_agent_and_data_disk(self):
        self.assertGreater(self.guest.boot_seconds, 0)
        self.assertEqual(qga_lab.DOMAIN_PREFIX,
                         self.guest.name[:len(qga_lab.DOMAIN_PREFIX)])
        xml = self.guest.domain.XMLDesc(0)
        self.assertIn("<domain type='qemu'", xml)
        self.assertRegex(xml, r"name='org.qemu.guest_agent.0' "
                              r"state='connected'")
        out = self.guest.check_shell('grep " /data " /proc/mounts')
        self.assertTrue(out.startswith(b'/dev/vda /data ext4 rw'), out)

    def test_shell_returns_output_and_status(self):
        rc, out, err = self.guest.shell('echo out; echo err >&2; exit 3')
        self.assertEqual((3, b'out\n', b'err\n'), (rc, out, err))
        rc, out, _err = self.guest.shell('id -u; cat', stdin=b'in\x00put')
        self.assertEqual((0, b'0\nin\x00put'), (rc, out))
        rc, _out, _err = self.guest.shell('kill -9 $$')
        self.assertEqual(128 + 9, rc)

    def test_real_agent_and_chpasswd(self):
        versions = lab_fixtures.shared_lab().versions()
        out = self.guest.check_shell('qemu-ga --version')
        self.assertIn(versions['qemu-ga'].encode(), out)
        info = self.guest.agent_command('guest-info')
        self.assertEqual(versions['qemu-ga'], info['version'])
        # Debian's busybox has no chpasswd applet: this must be shadow's.
        self.assertEqual(b'', self.guest.check_shell(
            'readlink /usr/sbin/chpasswd || true'))
        for key in ('libvirt', 'qemu', 'qemu-ga'):
            self.assertRegex(versions[key], r'^\d+\.\d+\.\d+$')

    def test_shadow_hash_and_password_check(self):
        original = self.guest.read_shadow_hash('alice')
        self.addCleanup(self.guest.check_shell,
                        "echo 'alice:%s' | chpasswd -e" % original)
        self.assertTrue(qga_lab.password_matches(qga_lab.INITIAL_PASSWORD,
                                                 self.guest.read_shadow_hash(
                                                     'alice')))
        self.guest.check_shell('echo alice:n3w-pass | chpasswd')
        changed = self.guest.read_shadow_hash('alice')
        self.assertTrue(changed.startswith('$y$'), changed)
        self.assertTrue(qga_lab.password_matches('n3w-pass', changed))
        self.assertFalse(qga_lab.password_matches('old', changed))
        self.assertEqual('*', self.guest.read_shadow_hash('root'))
        self.assertRaises(qga_lab.LabError, self.guest.read_shadow_hash,
                          'mallory')

    def test_pause_and_resume_agent(self):
        self.guest.pause_agent()
        started = time.monotonic()
        error = self.assertRaises(libvirt.libvirtError, self.guest.ping, 1)
        self.assertGreaterEqual(time.monotonic() - started, 0.9)
        self.assertEqual(libvirt.VIR_ERR_AGENT_UNRESPONSIVE,
                         error.get_error_code())
        self.assertIn('not available for now', error.get_error_message())
        self.guest.resume_agent()
        self.guest.ping()

    def test_stop_agent_disconnects_channel_for_a_while(self):
        self.guest.stop_agent(3)
        error = self.assertRaises(libvirt.libvirtError, self.guest.ping)
        self.assertTrue(qga_lab.guest.is_not_connected(error))
        self.assertIn("state='disconnected'", self.guest.domain.XMLDesc(0))
        waited = self.guest.wait_agent(timeout=30)
        self.assertGreater(waited, 1)
        self.guest.ping()

    def test_control_port_reaches_guest_without_agent(self):
        self.assertEqual(0, self.guest.control('touch /run/ctl-test'))
        self.assertEqual(3, self.guest.control('exit 3'))
        self.assertEqual(b'ok\n', self.guest.check_shell(
            'test -f /run/ctl-test && rm /run/ctl-test && echo ok'))


class BootVariantsTest(testtools.TestCase):

    def test_boot_many_block_rpcs_no_agent_and_disk_size_and_fill(self):
        lab = lab_fixtures.shared_lab()
        blocked, no_agent = lab.boot_many([
            dict(name=lab_fixtures.unique_name('blocked'),
                 block_rpcs=('guest-get-time', 'guest-file-open'),
                 data_disk_mb=64, data_fill_mb=3),
            dict(name=lab_fixtures.unique_name('noagent'), agent=False),
        ])
        self.addCleanup(lab.destroy, no_agent)
        self.addCleanup(lab.destroy, blocked)

        error = self.assertRaises(libvirt.libvirtError,
                                  blocked.agent_command, 'guest-get-time')
        self.assertEqual(libvirt.VIR_ERR_INTERNAL_ERROR,
                         error.get_error_code())
        self.assertIn('has been disabled', error.get_error_message())
        enabled = {c['name']: c['enabled'] for c in
                   blocked.agent_command('guest-info')['supported_commands']}
        self.assertEqual((False, False, True), (
            enabled['guest-get-time'], enabled['guest-file-open'],
            enabled['guest-exec']))
        size_kb = int(blocked.check_shell(
            "df -k /data | awk 'NR == 2 {print $2}'"))
        self.assertTrue(50 * 1024 < size_kb <= 64 * 1024, size_kb)
        # 3 MiB of data that a copy cannot skip: allocated, not zeros.
        size, used_kb, _path, nonzero = blocked.check_shell(
            'stat -c %s /data/fill; du -k /data/fill; '
            'head -c 65536 /data/fill | tr -d "\\000" | wc -c').split()
        self.assertEqual(3 * 1024 * 1024, int(size))
        self.assertGreaterEqual(int(used_kb), 3 * 1024)
        self.assertGreater(int(nonzero), 65000)

        self.assertNotIn('guest_agent', no_agent.domain.XMLDesc(0))
        error = self.assertRaises(libvirt.libvirtError, no_agent.ping)
        self.assertEqual(libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED,
                         error.get_error_code())
        self.assertIn('lab: ready', no_agent.console_output())
        self.assertEqual(0, no_agent.control(
            'grep -q " /data ext4 " /proc/mounts'))

    def test_stale_domain_of_same_name_is_replaced(self):
        lab = lab_fixtures.shared_lab()
        name = lab_fixtures.unique_name('stale')
        first = lab.boot(name, wait=False)
        second = lab.boot(name, wait=False)
        self.addCleanup(lab.destroy, second)
        self.assertNotEqual(first.uuid, second.uuid)
        self.assertRaises(libvirt.libvirtError,
                          lab.connect().lookupByUUIDString, first.uuid)
        self.assertEqual(first.name, second.name)
        self.assertEqual(1, len(_qemu_pids(second.name)))

    def test_only_guests_of_dead_processes_count_as_stale(self):
        lab = lab_fixtures.shared_lab()
        orphan, kept = lab.boot_many([lab_fixtures.unique_name('orphan'),
                                      lab_fixtures.unique_name('kept')],
                                     wait=False)
        self.addCleanup(lab.destroy, kept)
        self.addCleanup(lab.destroy, orphan)
        finished = subprocess.Popen(['true'])
        finished.wait()
        for guest, pid in ((orphan, finished.pid), (kept, 1)):
            with open(os.path.join(guest.directory, 'owner'), 'w') as f:
                f.write(str(pid))

        destroyed = lab.destroy_lab_domains()
        self.assertIn(orphan.name, destroyed)
        self.assertNotIn(kept.name, destroyed)
        self.assertRaises(libvirt.libvirtError,
                          lab.connect().lookupByUUIDString, orphan.uuid)
        self.assertTrue(kept.domain.isActive())
        self.assertIn(kept.name, lab.destroy_lab_domains(force=True))


class DomainXmlTest(testtools.TestCase):
    """The XML that Nova-side users reuse, without booting it."""

    def test_switches_and_paths(self):
        lab = lab_fixtures.shared_lab()
        image = lab.build_guest()
        root = etree.fromstring(lab.domain_xml(
            "it's", block_rpcs=('guest-exec', 'guest-get-time'),
            disk='/tmp/d.qcow2', control_socket='/tmp/c.sock'))
        self.assertEqual('qemu', root.get('type'))
        self.assertEqual(qga_lab.DOMAIN_PREFIX + "it's",
                         root.findtext('name'))
        self.assertEqual((image.kernel, image.initrd), (
            root.findtext('os/kernel'), root.findtext('os/initrd')))
        self.assertTrue(os.path.exists(image.kernel))
        self.assertIn('qga.block=guest-exec,guest-get-time',
                      root.findtext('os/cmdline'))
        self.assertEqual('/tmp/d.qcow2', root.find(
            'devices/disk/source').get('file'))
        names = [c.find('target').get('name')
                 for c in root.findall('devices/channel')]
        self.assertEqual(['org.qemu.guest_agent.0',
                          'org.nova_qga_ext.lab.control'], names)

        root = etree.fromstring(lab.domain_xml('plain', agent=False))
        self.assertEqual([], root.findall('devices/channel'))
        self.assertEqual([], root.findall('devices/disk'))
        self.assertNotIn('qga.block', root.findtext('os/cmdline'))
        # Booting under load must not trip the kernel's timer check.
        self.assertIn('no_timer_check', root.findtext('os/cmdline').split())


class TeardownTest(testtools.TestCase):

    def test_teardown_destroys_guests_and_files(self):
        # A second Lab on the running libvirtd: it did not start the
        # daemon, so its teardown must leave it up and remove only its own.
        lab_fixtures.shared_lab()
        workdir = self.useFixture(fixtures.TempDir()).path
        lab = qga_lab.Lab(workdir)
        guest = lab.boot(lab_fixtures.unique_name('teardown'), wait=False)
        self.assertEqual(1, len(_qemu_pids(guest.name)))
        self.assertTrue(os.path.exists(guest.data_disk))
        lab.teardown()
        self.assertFalse(lab.started_libvirtd)
        self.assertRaises(libvirt.libvirtError,
                          lab_fixtures.shared_lab().connect()
                          .lookupByUUIDString, guest.uuid)
        self.assertEqual([], _qemu_pids(guest.name))
        self.assertFalse(os.path.exists(guest.directory))
        # The shared daemon is still there.
        lab_fixtures.shared_lab().connect().getLibVersion()
