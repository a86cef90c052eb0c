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

"""libvirtd without systemd: start, readiness, stop, by pid file.

Only the daemon recorded in the lab's own pid file is ever signalled.
"""

import os
import subprocess
import time

from oslo_log import log as logging

LOG = logging.getLogger(__name__)

URI = 'qemu:///system'
LIBVIRTD = '/usr/sbin/libvirtd'
# The first start probes QEMU's capabilities (~8 s); they are cached after.
START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0


class LibvirtdError(Exception):
    pass


def alive(pid):
    """True if pid runs (a zombie nobody reaped does not count)."""
    try:
        with open('/proc/%d/stat' % pid) as f:
            return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except (OSError, IndexError):
        return False


def read_pid(pidfile):
    """PID of the live libvirtd recorded in pidfile, or None."""
    try:
        with open(pidfile) as f:
            pid = int(f.read().strip())
    except (OSError, ValueError):
        return None
    try:
        with open('/proc/%d/comm' % pid) as f:
            if f.read().strip() != 'libvirtd':
                return None
    except OSError:
        return None
    return pid if alive(pid) else None


def responds(uri=URI):
    """True if a libvirtd answers on uri."""
    return subprocess.run(
        ['virsh', '-q', '-c', uri, 'version'], stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL).returncode == 0


def wait_ready(timeout=START_TIMEOUT, uri=URI, pid=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if responds(uri):
            return
        if pid is not None and not alive(pid):
            raise LibvirtdError('libvirtd (pid %d) exited during start' % pid)
        time.sleep(0.1)
    raise LibvirtdError('libvirtd did not answer within %.0f s' % timeout)


def start(pidfile, logfile, config):
    """Start libvirtd as a daemon with the given config; return its pid."""
    # Without the --daemon fork the daemon would be our child, and a test
    # runner's process-group cleanup would kill it mid-run.
    subprocess.run([LIBVIRTD, '--daemon', '--pid-file', pidfile,
                    '--config', config], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 5
    pid = read_pid(pidfile)
    while pid is None and time.monotonic() < deadline:
        time.sleep(0.05)
        pid = read_pid(pidfile)
    if pid is None:
        raise LibvirtdError('libvirtd did not start; see %s' % logfile)
    try:
        wait_ready(pid=pid)
    except LibvirtdError as e:
        raise LibvirtdError('%s; see %s' % (e, logfile))
    return pid


def stop(pidfile, timeout=STOP_TIMEOUT):
    """Stop the libvirtd recorded in pidfile; True if one was running."""
    pid = read_pid(pidfile)
    if pid is None:
        _remove(pidfile)
        return False
    os.kill(pid, 15)
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            LOG.warning('libvirtd %d ignored SIGTERM; killing it', pid)
            os.kill(pid, 9)
            deadline = time.monotonic() + timeout
        time.sleep(0.1)
    _remove(pidfile)
    return True


def _remove(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
