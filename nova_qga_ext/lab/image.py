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

"""The lab guest: Debian's kernel, a busybox initramfs with the real qemu-ga
and chpasswd, and an ext4 data disk.

Images are cached under ``<workdir>/images/<digest>``, where the digest
covers everything that goes into them (host binaries, kernel, /init), so an
upgraded host package gives a new image and an unchanged host reuses the
old one.
"""

import dataclasses
import glob
import gzip
import hashlib
import os
import re
import shutil
import subprocess
import tempfile

from oslo_log import log as logging

LOG = logging.getLogger(__name__)

GUEST_USERS = ('root', 'alice')
# alice's initial password; tests check it changes.
INITIAL_PASSWORD = 'old'
# A fixed salt keeps the image content, and so its cache digest, stable.
_INITIAL_SALT = 'qgalab00'

_MODULES = ('virtio_pci', 'virtio_console', 'virtio_blk', 'crc32c_generic',
            'ext4')
_BINARIES = ('/usr/sbin/qemu-ga', '/usr/sbin/chpasswd')
_PAM_MODULES = ('pam_unix.so', 'pam_deny.so', 'pam_permit.so')
_PAM_DIR = '/lib/x86_64-linux-gnu/security'
_BUSYBOX = ('/bin/busybox', '/usr/bin/busybox')
_INIT = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'init.sh')
# Bump when the build steps below change in a way the digest cannot see.
_FORMAT = '1'

_PAM_PASSWORD = '''\
password [success=1 default=ignore] pam_unix.so obscure yescrypt
password requisite pam_deny.so
password required pam_permit.so
'''

_FILES = {
    'etc/passwd': ('root:x:0:0:root:/root:/bin/sh\n'
                   'alice:x:1000:1000:alice:/home/alice:/bin/sh\n'),
    'etc/group': 'root:x:0:\nalice:x:1000:\n',
    'etc/nsswitch.conf': 'passwd: files\ngroup: files\nshadow: files\n',
    'etc/pam.d/chpasswd': '@include common-password\n',
    'etc/pam.d/common-password': _PAM_PASSWORD,
    'etc/os-release': ('NAME="nova-qga-ext lab"\nID=qgalab\n'
                       'VERSION_ID=1\nPRETTY_NAME="nova-qga-ext lab guest"\n'),
    'etc/hostname': 'qgalab\n',
}


class ImageBuildError(Exception):
    pass


@dataclasses.dataclass(frozen=True)
class GuestImage:
    """Paths of a built guest; kernel and initrd can be uploaded as AKI/ARI."""

    kernel: str
    initrd: str
    data_template: str
    kernel_version: str

    @property
    def directory(self):
        return os.path.dirname(self.kernel)


def _run(argv, **kwargs):
    try:
        return subprocess.run(argv, check=True, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, **kwargs)
    except subprocess.CalledProcessError as e:
        raise ImageBuildError('%s failed (%d): %s' % (
            ' '.join(argv), e.returncode, e.stderr.strip()))


def find_kernel():
    """Newest /boot/vmlinuz-* that has its modules installed."""
    found = []
    for path in glob.glob('/boot/vmlinuz-*'):
        version = path[len('/boot/vmlinuz-'):]
        if os.path.isdir('/lib/modules/%s/kernel' % version):
            key = [int(n) for n in re.findall(r'\d+', version)]
            found.append((key, version, path))
    if not found:
        raise ImageBuildError(
            'no /boot/vmlinuz-* with modules; install linux-image-amd64')
    _key, version, path = max(found)
    return version, path


def module_paths(kernel_version):
    """The .ko files for _MODULES, dependencies first, without repeats."""
    ordered = []
    for mod in _MODULES:
        out = _run(['modprobe', '-S', kernel_version, '--show-depends',
                    mod]).stdout
        for line in out.splitlines():
            words = line.split()
            if words[:1] == ['insmod'] and words[1] not in ordered:
                ordered.append(words[1])
    return ordered


def _busybox():
    for path in _BUSYBOX:
        if os.path.exists(path):
            return path
    raise ImageBuildError('busybox not found; install busybox-static')


def _libraries(binaries):
    """Shared libraries (host paths) the binaries need, loader included."""
    libs = set()
    for binary in binaries:
        for line in _run(['ldd', binary]).stdout.splitlines():
            m = re.search(r'(?:=>\s*)?(/\S+)\s+\(0x', line)
            if m:
                libs.add(m.group(1))
    return sorted(libs)


def _inputs():
    """Every host file the image is built from."""
    kernel_version, kernel = find_kernel()
    pam = [os.path.join(_PAM_DIR, m) for m in _PAM_MODULES]
    binaries = list(_BINARIES) + pam
    for path in binaries:
        if not os.path.exists(path):
            raise ImageBuildError('%s is missing; run the lab install' % path)
    return {
        'kernel_version': kernel_version,
        'kernel': kernel,
        'modules': module_paths(kernel_version),
        'busybox': _busybox(),
        'binaries': binaries,
        'libraries': _libraries(binaries),
        'extra': ['/etc/login.defs'],
    }


def _digest(inputs):
    h = hashlib.sha256(_FORMAT.encode())
    h.update(inputs['kernel_version'].encode())
    # Host files change only with their packages: size and mtime suffice.
    paths = ([inputs['kernel'], inputs['busybox']] + inputs['modules'] +
             inputs['binaries'] + inputs['libraries'] + inputs['extra'])
    for path in paths:
        st = os.stat(path)
        h.update(('%s %d %d\n' % (path, st.st_size, st.st_mtime_ns)).encode())
    # The project's own /init by content: every install gives it a new mtime.
    with open(_INIT, 'rb') as f:
        h.update(f.read())
    h.update(repr(sorted(_FILES.items())).encode())
    return h.hexdigest()[:16]


def _prune(images_dir, keep):
    """Delete all but the `keep` most recently used image directories.

    Running guests do not need theirs: QEMU reads kernel and initrd at
    start, and data disks are per-guest copies.
    """
    dirs = [os.path.join(images_dir, d) for d in os.listdir(images_dir)
            if not d.startswith('.')]
    dirs.sort(key=os.path.getmtime, reverse=True)
    for old in dirs[keep:]:
        shutil.rmtree(old, ignore_errors=True)


def _copy_host_file(src, root):
    """Copy src to the same path under root, following symlinks."""
    dest = os.path.join(root, src.lstrip('/'))
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    shutil.copy2(os.path.realpath(src), dest)


def _write(root, rel, content, mode=0o644):
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        f.write(content)
    os.chmod(path, mode)


def _populate_root(root, inputs):
    for d in ('bin', 'sbin', 'usr/bin', 'usr/sbin', 'dev', 'proc', 'sys',
              'run', 'tmp', 'data', 'var/log', 'root', 'home/alice',
              'lib/modules'):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    os.chmod(os.path.join(root, 'tmp'), 0o1777)
    os.symlink('../run', os.path.join(root, 'var/run'))

    shutil.copy2(inputs['busybox'], os.path.join(root, 'bin/busybox'))
    applets = _run([inputs['busybox'], '--list-full']).stdout.split()
    for applet in applets:
        link = os.path.join(root, applet)
        if not os.path.lexists(link):
            os.makedirs(os.path.dirname(link), exist_ok=True)
            os.symlink('/bin/busybox', link)

    # The real binaries replace any busybox applet of the same name.
    for path in inputs['binaries'] + inputs['libraries'] + inputs['extra']:
        dest = os.path.join(root, path.lstrip('/'))
        if os.path.lexists(dest):
            os.unlink(dest)
        _copy_host_file(path, root)

    names = []
    for ko in inputs['modules']:
        name = os.path.basename(ko)
        shutil.copy2(ko, os.path.join(root, 'lib/modules', name))
        names.append(name)
    _write(root, 'lib/modules/modules.order', '\n'.join(names) + '\n')

    for rel, content in _FILES.items():
        _write(root, rel, content)
    initial = _run(['openssl', 'passwd', '-6', '-salt', _INITIAL_SALT,
                    INITIAL_PASSWORD]).stdout.strip()
    _write(root, 'etc/shadow',
           'root:*:19000:0:99999:7:::\nalice:%s:19000:0:99999:7:::\n'
           % initial, 0o600)
    os.chown(os.path.join(root, 'home/alice'), 1000, 1000)
    shutil.copy2(_INIT, os.path.join(root, 'init'))
    os.chmod(os.path.join(root, 'init'), 0o755)


def _pack_initrd(root, dest):
    names = _run(['find', '.'], cwd=root).stdout
    cpio = subprocess.run(['cpio', '-o', '-H', 'newc', '--quiet'], cwd=root,
                          input=names.encode(), stdout=subprocess.PIPE,
                          check=True).stdout
    with gzip.open(dest, 'wb', compresslevel=1) as f:
        f.write(cpio)


def _write_filler(path, size_mb):
    # Random bytes: neither qemu-img nor a mirror job can skip or shrink
    # them the way they do zeros; one random MiB repeated is as good.
    block = os.urandom(1024 * 1024)
    with open(path, 'wb') as f:
        for _ in range(size_mb):
            f.write(block)


def make_data_disk(dest, size_mb, fill_mb=0):
    """An ext4 filesystem of size_mb MiB in a qcow2 file.

    With fill_mb, /fill holds that many MiB of random data that every copy
    of the disk has to move; otherwise the disk is sparse.
    """
    with tempfile.TemporaryDirectory(dir=os.path.dirname(dest)) as tmp:
        raw = os.path.join(tmp, 'data.raw')
        with open(raw, 'wb') as f:
            f.truncate(size_mb * 1024 * 1024)
        mkfs = ['mkfs.ext4', '-q', '-F', '-L', 'data']
        if fill_mb:
            content = os.path.join(tmp, 'content')
            os.mkdir(content)
            _write_filler(os.path.join(content, 'fill'), fill_mb)
            mkfs += ['-d', content]
        _run(mkfs + [raw])
        _run(['qemu-img', 'convert', '-f', 'raw', '-O', 'qcow2', raw,
              dest + '.tmp'])
        os.replace(dest + '.tmp', dest)


def data_template(image_dir, size_mb, fill_mb=0):
    """Path of the cached data disk of size_mb MiB with fill_mb MiB of data
    (see make_data_disk); built if needed.
    """
    name = 'data-%dM.qcow2' % size_mb
    if fill_mb:
        name = 'data-%dM-filled-%dM.qcow2' % (size_mb, fill_mb)
    path = os.path.join(image_dir, name)
    if not os.path.exists(path):
        make_data_disk(path, size_mb, fill_mb)
    return path


def build(images_dir, data_disk_mb=32):
    """Build (or reuse) the guest image under images_dir."""
    inputs = _inputs()
    target = os.path.join(images_dir, _digest(inputs))
    if not os.path.isdir(target):
        os.makedirs(images_dir, exist_ok=True)
        staging = tempfile.mkdtemp(prefix='.build-', dir=images_dir)
        os.chmod(staging, 0o755)
        try:
            root = os.path.join(staging, 'root')
            _populate_root(root, inputs)
            shutil.copy2(inputs['kernel'],
                         os.path.join(staging, 'vmlinuz'))
            _pack_initrd(root, os.path.join(staging, 'initrd.img'))
            shutil.rmtree(root)
            _write(staging, 'kernel-version', inputs['kernel_version'] + '\n')
            try:
                os.rename(staging, target)
            except OSError:
                # Another process built the same image first.
                if not os.path.isdir(target):
                    raise
        finally:
            if os.path.isdir(staging):
                shutil.rmtree(staging)
        LOG.info('Built lab guest image %s', target)
        _prune(images_dir, keep=3)
    else:
        # Marks it recently used for _prune.
        os.utime(target)
    return GuestImage(kernel=os.path.join(target, 'vmlinuz'),
                      initrd=os.path.join(target, 'initrd.img'),
                      data_template=data_template(target, data_disk_mb),
                      kernel_version=inputs['kernel_version'])
