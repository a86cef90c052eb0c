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

"""The quiesced snapshot through nova's real driver on a real guest.

``qga_ext.LibvirtDriver.snapshot()`` runs against qemu:///system, on a lab
guest whose data disk (the only disk, vda) plays the instance's root disk:
nova's own live snapshot (blockRebase mirror, abort, redefinition, qemu-img
extraction) with the extension's freeze at the consistency point. Only the
image service is local. The image is checked offline (qemu-img, e2fsck,
debugfs) and the guest through the lab's raw agent path.
"""

import hashlib
import logging
import os
import statistics
import subprocess
import sys
import time
from unittest import mock

import fixtures
import libvirt
from nova import context as nova_context
from nova import exception as nova_exception
from nova.virt.libvirt import config as libvirt_config
from nova.virt.libvirt import guest as libvirt_guest
from oslo_config import cfg
from oslo_config import fixture as config_fixture
import testtools

from nova_qga_ext.extensions import quiesced_snapshot as qs
from nova_qga_ext.lab import compute as lab_compute
from tests.functional import lab as lab_fixtures

CONF = cfg.CONF

# Appends numbered lines to /data/load.log as fast as the guest can, until
# /data/stop exists; each line is written with one write(2).
_WRITER = ("rm -f /data/stop; setsid sh -c 'i=0; "
           "while [ ! -e /data/stop ]; do i=$((i+1)); "
           "echo \"line $i\" >> /data/load.log; done' "
           "</dev/null >/dev/null 2>&1 &")


def _report(line):
    print(line, file=sys.stderr)


class QuiescedSnapshotDriverTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        compute = self.useFixture(
            lab_compute.RealDriverFixture(['quiesced_snapshot']))
        self.driver = compute.driver
        self.images = compute.images
        self.work = compute.workdir
        self.context = nova_context.get_admin_context()

    def boot(self, **kwargs):
        guest = self.useFixture(
            lab_fixtures.LabGuestFixture('qsnap', **kwargs)).guest
        return guest, lab_compute.lab_instance(guest)

    def snapshot(self, instance, image_id='image', marked=True):
        self.images.add(image_id, {qs.QUIESCE_PROPERTY: qs.QUIESCE_REQUIRED}
                        if marked else {})
        started = time.monotonic()
        self.driver.snapshot(self.context, instance, image_id, mock.Mock())
        _report('snapshot() took %.0f ms' % (
            (time.monotonic() - started) * 1000))
        return self.images.images[image_id]

    def image_files(self, image_id, *paths):
        """e2fsck the uploaded image; return the files' contents."""
        raw = os.path.join(self.work, image_id + '.raw')
        subprocess.run(['qemu-img', 'convert', '-f', 'qcow2', '-O', 'raw',
                        self.images.path(image_id), raw], check=True)
        fsck = subprocess.run(['e2fsck', '-fn', raw], capture_output=True,
                              text=True)
        self.assertEqual(0, fsck.returncode, fsck.stdout + fsck.stderr)
        contents = []
        for path in paths:
            out = subprocess.run(['debugfs', '-R', 'cat %s' % path, raw],
                                 capture_output=True, check=True)
            contents.append(out.stdout)
        return contents

    def assert_thawed(self, guest):
        self.assertEqual('thawed',
                         guest.agent_command('guest-fsfreeze-status'))
        guest.check_shell('echo alive > /data/alive && sync')

    def assert_disk_back_on_original(self, guest):
        self.assertEqual({}, guest.domain.blockJobInfo('vda', 0))
        self.assertIn("<source file='%s'" % guest.data_disk,
                      guest.domain.XMLDesc(0))

    def test_snapshot_under_write_load(self):
        guest, instance = self.boot()
        # Written without sync: only the freeze flushes it to the disk.
        guest.check_shell(
            'head -c 1048576 /dev/urandom > /data/before.bin && '
            'sha256sum /data/before.bin > /run/before.sum')
        expected = guest.check_shell('cut -d" " -f1 /run/before.sum')
        guest.check_shell(_WRITER)
        time.sleep(0.5)
        write_instance_config = self.driver._host.write_instance_config
        status_at_redefinition = []

        def probed_write_instance_config(xml):
            status_at_redefinition.append(
                guest.agent_command('guest-fsfreeze-status'))
            return write_instance_config(xml)

        try:
            with mock.patch.object(self.driver._host, 'write_instance_config',
                                   probed_write_instance_config):
                image = self.snapshot(instance)
        finally:
            guest.check_shell('touch /data/stop')

        # Thawed as soon as the block job ended, before nova redefines the
        # domain (nova alone thaws after that).
        self.assertEqual(['thawed'], status_at_redefinition)
        properties = image['properties']
        self.assertEqual('active', image['status'])
        self.assertEqual('1', properties[qs.FROZEN_FILESYSTEMS_PROPERTY])
        window_ms = float(properties[qs.FREEZE_WINDOW_PROPERTY])
        self.assertGreater(window_ms, 0)
        self.assertLess(window_ms, CONF.qga_ext.freeze_timeout * 1000)
        before, log = self.image_files('image', '/before.bin',
                                       '/load.log')
        self.assertEqual(expected.strip().decode(),
                         hashlib.sha256(before).hexdigest())
        # The writer's log is a clean prefix: complete, consecutive lines.
        lines = log.decode().splitlines()
        self.assertGreater(len(lines), 0)
        self.assertEqual(['line %d' % i for i in range(1, len(lines) + 1)],
                         lines)
        self.assert_thawed(guest)
        self.assert_disk_back_on_original(guest)
        _report('freeze window under write load: %.1f ms (%d lines in the '
                'image)' % (window_ms, len(lines)))

    def test_freeze_window_compared_with_nova(self):
        """Reports ours, nova's own, and a bare fsFreeze + fsThaw.

        Under write load, alternating snapshots, timed at libvirt's
        fsFreeze/fsThaw that both paths call: the window (freeze sent to
        thaw returned) and the gap the host adds (freeze returned to thaw
        sent), which is what thawing before the redefinition shortens.
        """
        runs = 5
        guest, instance = self.boot()
        guest.check_shell(_WRITER)
        calls = []

        def timed(method):
            def call(domain, *args, **kwargs):
                started = time.monotonic()
                try:
                    return method(domain, *args, **kwargs)
                finally:
                    calls.append((started, time.monotonic()))
            return call

        redefinitions = []
        write_instance_config = self.driver._host.write_instance_config

        def timed_write_instance_config(xml):
            started = time.monotonic()
            write_instance_config(xml)
            redefinitions.append((time.monotonic() - started) * 1000)

        ours, nova = [], []
        try:
            with mock.patch.object(libvirt.virDomain, 'fsFreeze',
                                   timed(libvirt.virDomain.fsFreeze)), \
                    mock.patch.object(libvirt.virDomain, 'fsThaw',
                                      timed(libvirt.virDomain.fsThaw)), \
                    mock.patch.object(self.driver._host,
                                      'write_instance_config',
                                      timed_write_instance_config):
                for run in range(runs):
                    for marked, timings in ((True, ours), (False, nova)):
                        del calls[:]
                        image = self.snapshot(instance, '%s%d' % (
                            'ours' if marked else 'nova', run), marked)
                        self.assertEqual(
                            marked,
                            qs.FREEZE_WINDOW_PROPERTY in image['properties'])
                        (freeze_sent, frozen), (thaw_sent, thawed) = calls
                        timings.append(((thawed - freeze_sent) * 1000,
                                        (thaw_sent - frozen) * 1000))
            raw = []
            for _ in range(10):
                started = time.monotonic()
                guest.domain.fsFreeze()
                guest.domain.fsThaw()
                raw.append((time.monotonic() - started) * 1000)
        finally:
            guest.check_shell('touch /data/stop')
        self.assert_thawed(guest)

        def median(values):
            return statistics.median(values)

        _report('freeze window, median of %d under write load: ours %.1f ms '
                '(host gap %.1f ms), nova alone %.1f ms (host gap %.1f ms, '
                'redefinition %.1f ms); bare fsFreeze+fsThaw median %.1f ms, '
                'max %.1f ms over 10' % (
                    runs,
                    median(w for w, _ in ours), median(g for _, g in ours),
                    median(w for w, _ in nova), median(g for _, g in nova),
                    median(redefinitions), median(raw), max(raw)))

    def test_blocked_fsfreeze_is_refused_before_copying(self):
        guest, instance = self.boot(block_rpcs=('guest-fsfreeze-freeze',))
        with mock.patch.object(libvirt_guest.BlockDevice, 'rebase') as rebase:
            error = self.assertRaises(
                nova_exception.InstanceAgentNotEnabled, self.snapshot,
                instance)
        self.assertIn('guest-fsfreeze-freeze', error.format_message())
        rebase.assert_not_called()
        self.assertFalse(os.path.exists(self.images.path('image')))
        self.assert_thawed(guest)

    def test_failed_freeze_at_consistency_point_fails_snapshot(self):
        guest, instance = self.boot(block_rpcs=('guest-fsfreeze-freeze',))
        # As if fsfreeze broke between the check and the consistency point.
        with mock.patch.object(qs.QuiescedSnapshot, 'check'):
            error = self.assertRaises(
                nova_exception.InstanceQuiesceFailed, self.snapshot,
                instance)
        _report('failed freeze: %s' % error.format_message())
        self.assertIn('guest-fsfreeze-freeze', error.format_message())
        self.assertFalse(os.path.exists(self.images.path('image')))
        self.assert_thawed(guest)
        self.assert_disk_back_on_original(guest)

    def test_watchdog_thaws_a_stuck_snapshot(self):
        self.useFixture(config_fixture.Config(CONF)).config(
            freeze_timeout=0.3, group='qga_ext')
        guest, instance = self.boot()
        statuses = []
        abort_job = libvirt_guest.BlockDevice.abort_job

        def slow_abort_job(device, *args, **kwargs):
            if device._guest._domain.blockJobInfo(device._disk, 0):
                # The end of the mirror, with the guest frozen: stuck.
                time.sleep(1.5)
                statuses.append(guest.agent_command('guest-fsfreeze-status'))
            return abort_job(device, *args, **kwargs)

        with mock.patch.object(libvirt_guest.BlockDevice, 'abort_job',
                               slow_abort_job):
            error = self.assertRaises(
                nova_exception.InstanceQuiesceFailed, self.snapshot,
                instance)
        self.assertIn('freeze_timeout', error.format_message())
        # Thawed by the watchdog while the snapshot thread was stuck.
        self.assertEqual(['thawed'], statuses)
        self.assertFalse(os.path.exists(self.images.path('image')))
        self.assert_thawed(guest)
        self.assert_disk_back_on_original(guest)

    def test_start_up_thaws_frozen_instances(self):
        guest, _instance = self.boot()
        # nova's metadata is what tells its instances from other domains.
        guest.domain.setMetadata(
            libvirt.VIR_DOMAIN_METADATA_ELEMENT, '<instance/>', 'nova',
            libvirt_config.NOVA_NS, libvirt.VIR_DOMAIN_AFFECT_LIVE)
        self.assertEqual(1, guest.domain.fsFreeze())
        self.addCleanup(guest.domain.fsThaw)
        log = self.useFixture(fixtures.FakeLogger(level=logging.WARNING))

        started = time.monotonic()
        self.driver.init_host('lab')
        _report('init_host() with one frozen instance: %.0f ms' % (
            (time.monotonic() - started) * 1000))

        self.assert_thawed(guest)
        self.assertIn('Thawed 1 filesystems of instance %s, found frozen at '
                      'start-up' % guest.uuid, log.output)
