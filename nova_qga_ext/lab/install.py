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

"""Host preparation for the lab: Debian packages, libvirt's user, qemu.conf.

This module uses the standard library only. ``tools/run-tests.sh`` runs it
with the system Python (``python3 nova_qga_ext/lab/install.py``) before the
project's virtualenv exists, because building that virtualenv (libvirt-python
is an sdist) needs the packages installed here.
"""

import logging
import os
import shutil
import subprocess
import sys

LOG = logging.getLogger(__name__)

# libvirt-daemon-system is deliberately absent: it brings polkit, systemd
# units and a default network, none of which a root-only, systemd-less CI
# machine can use.
PACKAGES = (
    'libvirt-daemon', 'libvirt-daemon-driver-qemu', 'libvirt-clients',
    'libvirt-dev', 'qemu-system-x86', 'qemu-utils', 'qemu-guest-agent',
    'busybox-static', 'linux-image-amd64', 'cpio', 'gzip', 'e2fsprogs',
    'kmod', 'openssl', 'passwd', 'libpam-runtime', 'libpam-modules',
    'gcc', 'pkg-config', 'python3-dev', 'python3-venv',
)

QEMU_CONF = '/etc/libvirt/qemu.conf'
# Run QEMU as root: there is no libvirt-qemu-owned storage or dynamic
# ownership to manage in the lab, and virtlogd is not running, so QEMU's
# stdio goes straight to files.
QEMU_CONF_TEXT = '''\
# Written by nova-qga-ext's lab (nova_qga_ext/lab/install.py).
user = "root"
group = "root"
stdio_handler = "file"
'''


def missing_packages(packages=PACKAGES):
    """Return the packages dpkg does not report as installed."""
    out = subprocess.run(
        ['dpkg-query', '-W', '-f', '${Package} ${db:Status-Status}\\n'] +
        list(packages),
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout
    installed = {line.split()[0] for line in out.splitlines()
                 if line.endswith(' installed')}
    return [p for p in packages if p not in installed]


def install_packages(packages=PACKAGES):
    """apt-get install whatever is missing; return the list installed."""
    missing = missing_packages(packages)
    if not missing:
        return []
    LOG.info('Installing Debian packages: %s', ' '.join(missing))
    env = dict(os.environ, DEBIAN_FRONTEND='noninteractive')
    subprocess.run(['apt-get', 'update', '-q'], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    subprocess.run(['apt-get', 'install', '-y', '-q',
                    '--no-install-recommends'] + missing,
                   check=True, env=env, stdout=subprocess.DEVNULL)
    return missing


def ensure_qemu_user():
    """Create libvirt-qemu, which libvirtd resolves before reading qemu.conf.

    Without libvirt-daemon-system nobody creates it, and libvirtd's QEMU
    driver then fails to initialise even though qemu.conf says root.
    """
    if subprocess.run(['getent', 'group', 'libvirt-qemu'],
                      stdout=subprocess.DEVNULL).returncode:
        subprocess.run(['groupadd', '-r', 'libvirt-qemu'], check=True)
    if subprocess.run(['getent', 'passwd', 'libvirt-qemu'],
                      stdout=subprocess.DEVNULL).returncode:
        subprocess.run(['useradd', '-r', '-g', 'libvirt-qemu',
                        '-d', '/var/lib/libvirt', '-s', '/usr/sbin/nologin',
                        'libvirt-qemu'], check=True)


def ensure_qemu_conf(path=QEMU_CONF):
    """Write qemu.conf unless it already has the lab's content.

    Returns True if the file changed, in which case a running libvirtd must
    be restarted to see it.
    """
    try:
        with open(path) as f:
            if f.read() == QEMU_CONF_TEXT:
                return False
    except FileNotFoundError:
        pass
    if os.path.exists(path):
        shutil.copy2(path, path + '.orig-nova-qga-ext')
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + '.tmp', 'w') as f:
        f.write(QEMU_CONF_TEXT)
    os.replace(path + '.tmp', path)
    return True


def install():
    """Prepare this host for the lab; quick when everything is in place."""
    if os.geteuid() != 0:
        raise PermissionError('the lab needs root (libvirtd, apt-get)')
    installed = install_packages()
    ensure_qemu_user()
    conf_changed = ensure_qemu_conf()
    return {'installed': installed, 'qemu_conf_changed': conf_changed}


if __name__ == '__main__':
    logging.basicConfig(level=logging.INFO, format='%(message)s')
    result = install()
    print('lab install: %d package(s) installed%s' % (
        len(result['installed']),
        ', qemu.conf written' if result['qemu_conf_changed'] else ''))
    sys.exit(0)
