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

"""A booted lab guest, driven through the raw agent protocol.

Everything here goes through ``libvirt_qemu.qemuAgentCommand`` directly and
not through ``nova_qga_ext.agent``, so functional tests can check what the
client did by a second, independent path.
"""

import base64
import ctypes
import ctypes.util
import json
import shlex
import shutil
import socket
import time

import libvirt
import libvirt_qemu
from oslo_log import log as logging

LOG = logging.getLogger(__name__)

# Under TCG a boot takes ~7 s alone and ~11 s with three in parallel on two
# cores; the margin covers a loaded CI machine.
BOOT_TIMEOUT = 180.0
POLL_INTERVAL = 0.05


class LabError(Exception):
    pass


def _libcrypt():
    return ctypes.CDLL(ctypes.util.find_library('crypt') or 'libcrypt.so.1')


def password_matches(password, hashed):
    """True if password hashes to hashed (any scheme libxcrypt knows).

    The guest's PAM writes yescrypt hashes; Python's crypt module is
    deprecated, so this calls the host's libcrypt directly.
    """
    crypt = _libcrypt().crypt
    crypt.restype = ctypes.c_char_p
    crypt.argtypes = (ctypes.c_char_p, ctypes.c_char_p)
    result = crypt(password.encode(), hashed.encode())
    return result is not None and result.decode() == hashed


def is_not_connected(error):
    """The agent channel is closed (qemu-ga not running): code 86 at once."""
    message = error.get_error_message() or ''
    return (error.get_error_code() == libvirt.VIR_ERR_AGENT_UNRESPONSIVE and
            'not connected' in message)


class LabGuest:
    """A transient lab domain and the files that belong to it."""

    def __init__(self, domain, directory, data_disk, console_log,
                 control_socket, agent):
        self.domain = domain
        self.name = domain.name()
        self.uuid = domain.UUIDString()
        self.directory = directory
        self.data_disk = data_disk
        self.console_log = console_log
        self.control_socket = control_socket
        self.has_agent = agent
        self.boot_seconds = None

    def __repr__(self):
        return '<LabGuest %s>' % self.name

    # Raw agent protocol

    def agent_command(self, command, arguments=None, timeout=5):
        """Send one agent command; return its "return" value."""
        request = {'execute': command}
        if arguments is not None:
            request['arguments'] = arguments
        reply = libvirt_qemu.qemuAgentCommand(
            self.domain, json.dumps(request), int(timeout), 0)
        return json.loads(reply).get('return')

    def ping(self, timeout=1):
        self.agent_command('guest-ping', timeout=timeout)

    def is_up(self, started, timeout):
        """One readiness probe: guest-ping, or /init's "lab: ready" line
        for a guest without an agent channel.

        Raises LabError once the domain died or timeout seconds passed
        since started (a time.monotonic() value).
        """
        error = None
        if self.has_agent:
            try:
                self.ping()
                return True
            except libvirt.libvirtError as e:
                error = e.get_error_message()
        elif 'lab: ready' in self.console_output():
            return True
        if not self.domain.isActive():
            raise LabError('guest %s stopped while booting; console:\n%s'
                           % (self.name, self.console_output()[-2000:]))
        if time.monotonic() - started > timeout:
            raise LabError('guest %s not up after %.0f s (%s); console:\n%s'
                           % (self.name, timeout, error,
                              self.console_output()[-2000:]))
        return False

    def wait_up(self, timeout=BOOT_TIMEOUT):
        """Wait until is_up(); return the seconds waited."""
        started = time.monotonic()
        while not self.is_up(started, timeout):
            time.sleep(POLL_INTERVAL)
        return time.monotonic() - started

    def wait_agent(self, timeout=BOOT_TIMEOUT):
        """Poll guest-ping until it answers; return the seconds waited."""
        if not self.has_agent:
            raise LabError('guest %s has no agent channel' % self.name)
        return self.wait_up(timeout)

    def console_output(self):
        try:
            with open(self.console_log, errors='replace') as f:
                return f.read()
        except FileNotFoundError:
            return ''

    def start_exec(self, argv, stdin=None, capture=True):
        arguments = {'path': argv[0], 'arg': list(argv[1:]),
                     'capture-output': capture}
        if stdin:
            arguments['input-data'] = base64.b64encode(stdin).decode()
        return self.agent_command('guest-exec', arguments)['pid']

    def shell(self, script, timeout=30, stdin=None):
        """Run script with /bin/sh -c as root; return (rc, stdout, stderr).

        rc is 128 + N when the shell died of signal N.
        """
        pid = self.start_exec(['/bin/sh', '-c', script], stdin=stdin)
        deadline = time.monotonic() + timeout
        delay = 0.002
        while True:
            status = self.agent_command('guest-exec-status', {'pid': pid})
            if status.get('exited'):
                break
            if time.monotonic() > deadline:
                self.start_exec(['/bin/kill', '-9', str(pid)], capture=False)
                raise LabError('guest shell did not finish in %s s' % timeout)
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
        rc = status.get('exitcode')
        if rc is None:
            rc = 128 + status.get('signal', 0)
        return (rc,
                base64.b64decode(status.get('out-data', '')),
                base64.b64decode(status.get('err-data', '')))

    def check_shell(self, script, timeout=30):
        """shell() that raises unless the script exits 0; returns stdout."""
        rc, out, err = self.shell(script, timeout)
        if rc:
            raise LabError('guest command failed (%d): %s' % (
                rc, err.decode(errors='replace').strip()))
        return out

    def read_shadow_hash(self, user):
        """The password hash of user in the guest's /etc/shadow."""
        out = self.check_shell(
            "awk -F: -v u=%s '$1 == u {print $2}' /etc/shadow"
            % shlex.quote(user))
        hashed = out.decode().strip()
        if not hashed:
            raise LabError('no user %s in the guest' % user)
        return hashed

    # Fault injection

    def control(self, line, timeout=10):
        """Run a shell line through the control port, bypassing qemu-ga."""
        if not self.control_socket:
            raise LabError('guest %s has no control port' % self.name)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(self.control_socket)
            s.sendall(line.encode() + b'\n')
            reply = b''
            while not reply.endswith(b'\n'):
                chunk = s.recv(64)
                if not chunk:
                    raise LabError('control port closed without a reply')
                reply += chunk
        words = reply.split()
        if words[:1] != [b'done'] or len(words) != 2:
            raise LabError('unexpected control reply %r' % reply)
        return int(words[1])

    def _signal_agent_later(self, script):
        # qemu-ga answers guest-exec after forking; the delay lets that
        # answer out before the child stops or kills qemu-ga.
        self.start_exec(['/bin/sh', '-c', 'sleep 0.3; ' + script],
                        capture=False)

    def pause_agent(self, timeout=10):
        """SIGSTOP qemu-ga: the channel stays connected, calls time out."""
        self._signal_agent_later('kill -STOP $(pidof qemu-ga)')
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.ping(timeout=1)
            except libvirt.libvirtError as e:
                if e.get_error_code() == libvirt.VIR_ERR_AGENT_UNRESPONSIVE:
                    return
                raise
            time.sleep(0.1)
        raise LabError('qemu-ga in %s still answers after SIGSTOP'
                       % self.name)

    def resume_agent(self, timeout=30):
        """SIGCONT qemu-ga (through the control port) and wait for it."""
        self.control('kill -CONT $(pidof qemu-ga)')
        return self.wait_agent(timeout)

    def stop_agent(self, seconds):
        """Stop qemu-ga; the guest restarts it about seconds later."""
        self._signal_agent_later('echo %d > /run/qga.pause; '
                                 'kill $(pidof qemu-ga)' % seconds)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                self.ping(timeout=1)
            except libvirt.libvirtError as e:
                if is_not_connected(e):
                    return
                # "disappeared while executing command": going down.
                if e.get_error_code() != libvirt.VIR_ERR_AGENT_UNRESPONSIVE:
                    raise
            time.sleep(0.1)
        raise LabError('qemu-ga in %s did not stop' % self.name)

    def destroy(self):
        """Destroy the domain and delete its files; idempotent.

        nova's live snapshot redefines the domain, which makes a lab
        guest persistent: it is undefined too, so that nothing is left in
        libvirt's configuration.
        """
        for operation in (self.domain.destroy, self.domain.undefine):
            try:
                operation()
            except libvirt.libvirtError as e:
                if e.get_error_code() not in (
                        libvirt.VIR_ERR_NO_DOMAIN,
                        libvirt.VIR_ERR_OPERATION_INVALID):
                    raise
        shutil.rmtree(self.directory, ignore_errors=True)
