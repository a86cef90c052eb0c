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

"""Benchmarks of the compute side against raw libvirt, in the same run.

Each measurement runs the plugin's path (nova's real driver with the
extensions, on a lab guest) interleaved with the raw libvirt-python
baseline on the same guest, and reports medians, p95s and their ratio.
Run it with ``bash tools/bench.sh``; it writes the numbers to a JSON file.
"""

from nova import monkey_patch ; monkey_patch.patch(backend='threading')  # noqa

import argparse
import concurrent.futures
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time

from nova import context as nova_context
from nova import objects

from nova_qga_ext.extensions import quiesced_snapshot as qs
from nova_qga_ext import lab as qga_lab
from nova_qga_ext.lab import compute

_TRUE = ['/bin/true']

# Dirties 1 MiB of page cache without sync, so that every freeze has the
# same data to flush and every snapshot has fresh data to copy.
_DIRTY = ('head -c 1048576 /dev/urandom > /data/dirty.$(date +%s%N) && '
          'ls -t /data/dirty.* | tail -n +4 | xargs -r rm -f')


def _percentile(values, fraction):
    ordered = sorted(values)
    return ordered[int(round(fraction * (len(ordered) - 1)))]


def _summary(samples_ms):
    return {'median_ms': round(statistics.median(samples_ms), 2),
            'p95_ms': round(_percentile(samples_ms, 0.95), 2),
            'n': len(samples_ms)}


def _timed(function, *args, **kwargs):
    started = time.perf_counter()
    function(*args, **kwargs)
    return (time.perf_counter() - started) * 1000


class Bench:

    def __init__(self, lab, compute, iterations):
        self.lab = lab
        self.driver = compute.driver
        self.images = compute.images
        self.endpoints = {type(endpoint).__name__: endpoint
                          for endpoint in compute.endpoints}
        self.context = nova_context.get_admin_context()
        self.iterations = iterations
        self.results = []

    def record(self, number, name, ours, baseline, target, note=''):
        row = {'number': number, 'name': name, 'ours': _summary(ours),
               'baseline': _summary(baseline), 'target': target,
               'note': note}
        row['ratio'] = round(row['ours']['median_ms'] /
                             row['baseline']['median_ms'], 2)
        self.results.append(row)
        print('%-52s ours %8.1f ms  baseline %8.1f ms  ratio %5.2f' % (
            name, row['ours']['median_ms'], row['baseline']['median_ms'],
            row['ratio']), file=sys.stderr)
        return row

    # 1. Freeze window

    def _snapshot(self, instance, image_id):
        self.images.add(image_id, {qs.QUIESCE_PROPERTY: qs.QUIESCE_REQUIRED})
        self.driver.snapshot(self.context, instance, image_id,
                             lambda **kwargs: None)
        properties = self.images.images[image_id]['properties']
        return float(properties[qs.FREEZE_WINDOW_PROPERTY])

    def _image_has(self, image_id, path):
        raw = self.images.path(image_id) + '.raw'
        subprocess.run(['qemu-img', 'convert', '-f', 'qcow2', '-O', 'raw',
                        self.images.path(image_id), raw], check=True)
        try:
            fsck = subprocess.run(['e2fsck', '-fn', raw],
                                  capture_output=True)
            listing = subprocess.run(['debugfs', '-R', 'ls -l /', raw],
                                     capture_output=True, text=True)
            return fsck.returncode == 0 and path in listing.stdout
        finally:
            os.unlink(raw)

    def freeze_window(self, guest, size_mb):
        instance = compute.lab_instance(guest)
        ours, raw, naive = [], [], []
        for run in range(self.iterations):
            guest.check_shell(_DIRTY)
            ours.append(self._snapshot(instance, 'snap%d-%d' % (size_mb,
                                                                run)))
            guest.check_shell(_DIRTY)
            raw.append(_timed(self._raw_freeze_thaw, guest))
        marker = 'marker.%d' % size_mb
        guest.check_shell('echo copied > /data/%s' % marker)
        image_id = 'checked%d' % size_mb
        self._snapshot(instance, image_id)
        copied = self._image_has(image_id, marker)
        guest.check_shell(_DIRTY)
        naive.append(_timed(self._naive_freeze, guest))
        row = self.record(
            1, 'freeze window, %d MiB data disk' % size_mb, ours, raw,
            '<= 2x', note='data written before the snapshot is in the '
            'image: %s; naive freeze across the copy: %.0f ms' % (
                'yes' if copied else 'NO', naive[0]))
        row['naive'] = _summary(naive)
        row['copied'] = copied
        return row

    @staticmethod
    def _raw_freeze_thaw(guest):
        guest.domain.fsFreeze()
        guest.domain.fsThaw()

    def _naive_freeze(self, guest):
        """Freeze held across a whole copy of the disk, for contrast."""
        copy = os.path.join(self.images.directory, 'naive.qcow2')
        guest.domain.fsFreeze()
        try:
            subprocess.run(['qemu-img', 'convert', '-U', '-O', 'qcow2',
                            guest.data_disk, copy], check=True)
        finally:
            guest.domain.fsThaw()
            os.unlink(copy)

    # 2. Guest exec

    def _exec(self, instance, argv):
        result = self.endpoints['GuestExecEndpoint'].guest_exec(
            self.context, instance, argv, None, '', 30, True)
        assert result['exited'] and result['exitcode'] == 0, result
        return result

    @staticmethod
    def _raw_exec(guest, argv):
        pid = guest.agent_command('guest-exec', {
            'path': argv[0], 'arg': argv[1:], 'capture-output': True})['pid']
        while True:
            status = guest.agent_command('guest-exec-status', {'pid': pid})
            if status['exited']:
                return status

    def guest_exec(self, guest):
        instance = compute.lab_instance(guest)
        for argv, name, target in (
                (_TRUE, 'guest exec /bin/true', '<= 1.2x'),
                (['/bin/sleep', '0.1'], 'guest exec sleep 0.1',
                 'ends within 10 ms of the command')):
            ours, raw = [], []
            for _ in range(self.iterations * 5):
                ours.append(_timed(self._exec, instance, argv))
                raw.append(_timed(self._raw_exec, guest, argv))
            self.record(2, name, ours, raw, target)

    # 3. Password

    def password(self, guest):
        instance = compute.lab_instance(guest)
        ours, raw = [], []
        for run in range(self.iterations):
            ours.append(_timed(self.driver.set_admin_password, instance,
                               'bench-%d' % run, user_name='alice'))
            raw.append(_timed(guest.domain.setUserPassword, 'alice',
                              'raw-%d' % run, 0))
        self.record(3, 'set_admin_password with user_name', ours, raw,
                    '<= 1.05x', note='dominated by yescrypt hashing in '
                    'the TCG guest')

    # 5. Concurrency

    def concurrency(self, guests, per_guest):
        """Serial vs parallel execs, ours and raw libvirt's alike.

        The raw speedup is what the machine allows (TCG guests compete for
        the cores); ours matching it shows that no lock is shared between
        instances.
        """
        instances = [compute.lab_instance(guest) for guest in guests]

        def ours(index):
            for _ in range(per_guest):
                self._exec(instances[index], _TRUE)

        def raw(index):
            for _ in range(per_guest):
                self._raw_exec(guests[index], _TRUE)

        total = len(guests) * per_guest
        row = {'number': 5,
               'name': '%d guests x %d execs' % (len(guests), per_guest),
               'target': 'near-linear throughput; no global lock'}
        for label, run in (('ours', ours), ('raw', raw)):
            indexes = range(len(guests))
            serial_ms = _timed(lambda: [run(i) for i in indexes])
            with concurrent.futures.ThreadPoolExecutor(len(guests)) as pool:
                parallel_ms = _timed(lambda: list(pool.map(run, indexes)))
            row[label] = {'serial_per_s': round(total / serial_ms * 1000, 1),
                          'parallel_per_s': round(
                              total / parallel_ms * 1000, 1),
                          'speedup': round(serial_ms / parallel_ms, 2)}
            print('%-52s %s: serial %6.1f/s  parallel %6.1f/s  speedup '
                  '%.2f' % (row['name'], label,
                            row[label]['serial_per_s'],
                            row[label]['parallel_per_s'],
                            row[label]['speedup']), file=sys.stderr)
        self.results.append(row)
        return row


def markdown(results, machine):
    lines = ['Measured on %s.' % machine, '',
             '| # | measurement | ours median (p95) | raw libvirt median '
             '(p95) | ratio | target | note |',
             '|---|---|---|---|---|---|---|']
    for row in results:
        if 'baseline' in row:
            lines.append('| %s | %s | %.1f ms (%.1f) | %.1f ms (%.1f) | '
                         '%.2f | %s | %s |' % (
                             row['number'], row['name'],
                             row['ours']['median_ms'], row['ours']['p95_ms'],
                             row['baseline']['median_ms'],
                             row['baseline']['p95_ms'], row['ratio'],
                             row['target'], row['note']))
        else:
            lines.append('| %s | %s | speedup %.2f (%.1f -> %.1f execs/s) '
                         '| speedup %.2f (%.1f -> %.1f execs/s) | %.2f | %s '
                         '| parallel over serial, on %d cores |' % (
                             row['number'], row['name'],
                             row['ours']['speedup'],
                             row['ours']['serial_per_s'],
                             row['ours']['parallel_per_s'],
                             row['raw']['speedup'],
                             row['raw']['serial_per_s'],
                             row['raw']['parallel_per_s'],
                             row['ours']['speedup'] / row['raw']['speedup'],
                             row['target'], os.cpu_count()))
    return '\n'.join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--iterations', type=int, default=5)
    parser.add_argument('--disk-sizes', default='32,1024,4096',
                        help='data disk sizes in MiB for the freeze window')
    parser.add_argument('--guests', type=int, default=4,
                        help='guests for the concurrency measurement')
    parser.add_argument('--execs-per-guest', type=int, default=25)
    parser.add_argument('--output', default='bench-results/latest.json')
    args = parser.parse_args(argv)

    objects.register_all()
    lab = qga_lab.Lab()
    lab.build_guest()
    lab.start_libvirtd()
    sizes = [int(size) for size in args.disk_sizes.split(',')]
    machine = '%d cores, %s, QEMU TCG (no KVM), libvirt %s, QEMU %s' % (
        os.cpu_count(), platform.machine(), *(
            lab.versions()[key] for key in ('libvirt', 'qemu')))
    with contextlib.ExitStack() as stack:
        stack.callback(lab.teardown)
        fixture = compute.RealDriverFixture(
            ['user_password', 'guest_exec', 'quiesced_snapshot'],
            agent_timeout=60)
        fixture.setUp()
        stack.callback(fixture.cleanUp)
        guests = lab.boot_many(
            [dict(name='bench%d' % i) for i in range(args.guests)] +
            [dict(name='bench-disk%d' % size, data_disk_mb=size)
             for size in sizes])
        bench = Bench(lab, fixture, args.iterations)
        for guest, size in zip(guests[args.guests:], sizes):
            bench.freeze_window(guest, size)
        bench.guest_exec(guests[0])
        bench.password(guests[0])
        bench.concurrency(guests[:args.guests], args.execs_per_guest)
    os.makedirs(os.path.dirname(args.output) or '.', exist_ok=True)
    with open(args.output, 'w') as f:
        json.dump({'machine': machine, 'results': bench.results}, f,
                  indent=2)
    print(markdown(bench.results, machine))


if __name__ == '__main__':
    main()
