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

"""QEMU guest agent client for one libvirt domain.

Every call is bounded: the dedicated libvirt APIs run after the domain's agent
response timeout is set, raw commands pass a per-call timeout to
qemuAgentCommand. libvirt errors become the AgentError subclasses below, whose
messages name the cause and the fix.
"""

import base64
import collections
import collections.abc
import contextlib
import dataclasses
import math
import threading
import time
import types

from oslo_log import log as logging
from oslo_serialization import jsonutils

from nova_qga_ext.i18n import _

try:
    # Optional so that unit tests run without libvirt; nova does the same.
    import libvirt
except ImportError:
    libvirt = None

try:
    import libvirt_qemu
except ImportError:
    libvirt_qemu = None

LOG = logging.getLogger(__name__)

# Error codes are part of libvirt's stable ABI; the bindings only define the
# names the C library they were built against knows (112/113 need 11.2).
VIR_ERR_INTERNAL_ERROR = getattr(libvirt, 'VIR_ERR_INTERNAL_ERROR', 1)
VIR_ERR_ARGUMENT_UNSUPPORTED = getattr(
    libvirt, 'VIR_ERR_ARGUMENT_UNSUPPORTED', 74)
VIR_ERR_AGENT_UNRESPONSIVE = getattr(libvirt, 'VIR_ERR_AGENT_UNRESPONSIVE', 86)
VIR_ERR_AGENT_COMMAND_TIMEOUT = getattr(
    libvirt, 'VIR_ERR_AGENT_COMMAND_TIMEOUT', 112)
VIR_ERR_AGENT_COMMAND_FAILED = getattr(
    libvirt, 'VIR_ERR_AGENT_COMMAND_FAILED', 113)
VIR_DOMAIN_PASSWORD_ENCRYPTED = getattr(
    libvirt, 'VIR_DOMAIN_PASSWORD_ENCRYPTED', 1)

# Prefix libvirt < 11.2 puts before the agent's own error description.
_AGENT_REFUSAL = 'unable to execute qemu agent command'

# Adaptive exec polling: the wait between polls grows with the time already
# spent, so the overshoot after the process ends stays under _POLL_FRACTION
# of its run time (5 ms for a 100 ms command, which so returns within 10 ms
# of its end, one agent round trip included), never above _POLL_MAX.
_POLL_MIN = 0.001
_POLL_FRACTION = 0.05
_POLL_MAX = 1.0


class AgentError(Exception):
    """Base class; like nova's exceptions, msg_fmt is filled from kwargs."""

    msg_fmt = _("The QEMU guest agent request failed.")

    def __init__(self, message=None, **kwargs):
        self.kwargs = kwargs
        super().__init__(message or self.msg_fmt % kwargs)

    def format_message(self):
        return self.args[0]


class AgentNotConfigured(AgentError):
    msg_fmt = _("The QEMU guest agent is not configured for this instance; "
                "set the image property hw_qemu_guest_agent=yes and rebuild "
                "the instance from that image.")


class AgentNotConnected(AgentError):
    msg_fmt = _("The QEMU guest agent is not connected: is qemu-ga installed "
                "and running in the guest? Start it (for example "
                "'systemctl start qemu-guest-agent') and retry.")


class AgentTimeout(AgentError):
    msg_fmt = _("The QEMU guest agent did not answer %(command)s within "
                "%(timeout)s s; qemu-ga may be hung or the guest overloaded, "
                "and the command may still take effect once it recovers. "
                "Check qemu-ga in the guest and retry.")


class AgentCommandDisabled(AgentError):
    msg_fmt = _("Command %(command)s has been disabled in the guest; enable "
                "it in the guest's qemu-ga configuration (for example the "
                "BLACKLIST_RPC / --block-rpcs / allow-rpcs setting).")


class AgentCommandFailed(AgentError):
    msg_fmt = _("The QEMU guest agent could not execute %(command)s: "
                "%(reason)s")


class ExecPidUnknown(AgentError):
    msg_fmt = _("The guest agent knows no process with pid %(pid)s: it never "
                "existed, its result was collected too long ago, or qemu-ga "
                "restarted. Start the command again.")


_FROZEN_MSG = _("Command %(command)s is refused while the guest's "
                "filesystems are frozen; thaw them and retry.")
_ABSENT_MSG = _("Command %(command)s is not supported by the guest's qemu-ga "
                "%(version)s; upgrade qemu-ga in the guest.")

# Replies travel through libvirt's RPC (strings up to 4 MiB) and libvirtd's
# agent reader (10 MiB, beyond which it drops the connection while qemu-ga
# stays blocked writing the rest). qemu-ga has freed an exec record by then.
_REPLY_TOO_LARGE = _(
    "the reply is larger than libvirt's 4 MiB message limit and is lost; "
    "keep a command's stdout and stderr together under about 3 MiB, for "
    "example by redirecting them to a file in the guest")
_REPLY_OVER_LIMIT = _(
    "the reply exceeded libvirt's 10 MiB agent limit and is lost; libvirt "
    "dropped the agent connection, so kill and restart qemu-ga in the guest "
    "(or restart the instance), and keep a command's output under about "
    "3 MiB")


@dataclasses.dataclass(frozen=True)
class AgentInfo:
    version: str
    commands: collections.abc.Mapping  # command name -> enabled

    def is_enabled(self, command):
        return self.commands.get(command, False)


@dataclasses.dataclass(frozen=True)
class ExecResult:
    pid: int
    exited: bool
    exitcode: int | None
    signal: int | None
    stdout: bytes
    stderr: bytes
    stdout_truncated: bool
    stderr_truncated: bool


class ExpiringCache:
    """A bounded map whose entries expire ttl seconds after they are put.

    The oldest entry is dropped first beyond max_entries. The lock only
    guards the dict, never an agent call.
    """

    def __init__(self, max_entries=1024, ttl=600.0):
        self.max_entries = max_entries
        self.ttl = ttl
        self._entries = collections.OrderedDict()
        self._lock = threading.Lock()

    def _expire(self, now):
        while self._entries:
            key, (expires, _value) = next(iter(self._entries.items()))
            if expires > now:
                break
            del self._entries[key]

    def get(self, key):
        with self._lock:
            self._expire(time.monotonic())
            entry = self._entries.get(key)
            return entry[1] if entry else None

    def put(self, key, value):
        with self._lock:
            now = time.monotonic()
            self._expire(now)
            self._entries.pop(key, None)
            self._entries[key] = (now + self.ttl, value)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def discard(self, key):
        with self._lock:
            self._entries.pop(key, None)

    def __len__(self):
        with self._lock:
            return len(self._entries)


# Final exec results by (domain uuid, pid): qemu-ga reports each only once.
RESULTS = ExpiringCache(max_entries=1024, ttl=600.0)
# guest-info by domain uuid, reused only for the commands it shows enabled:
# which commands qemu-ga allows changes only when it restarts, so an exec
# needs no extra round trip to check them (a fifth of the time of a short
# command under TCG). An error that hints at a restart drops the entry.
AGENT_INFO = ExpiringCache(max_entries=1024, ttl=60.0)


def _seconds(timeout):
    # libvirt takes whole seconds; 0 would mean "don't wait" and negative
    # values "block", so never go below one second.
    return max(1, math.ceil(timeout))


def _error_text(ex):
    """libvirt's error text, whatever the guest's codepage did to it."""
    try:
        # None when libvirt set no error: the exception has its own text.
        text = ex.get_error_message() or str(ex)
    except Exception:
        text = ''
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode('utf-8', 'replace')
    return text if isinstance(text, str) else ''


def _agent_reason(text):
    # "internal error: unable to execute QEMU agent command 'x': <reason>"
    head, sep, reason = text.partition("': ")
    return reason if sep and _AGENT_REFUSAL in head.lower() else text


def _translate(ex, command, timeout, elapsed):
    """Map a libvirtError raised by a command to an AgentError."""
    try:
        code = ex.get_error_code()
    except Exception:
        code = None
    text = _error_text(ex)
    lowered = text.lower()
    if code == VIR_ERR_ARGUMENT_UNSUPPORTED and 'not configured' in lowered:
        return AgentNotConfigured()
    # libvirt's guest-sync before a raw command waits up to 5 s whatever
    # the per-call timeout, so report the time actually waited.
    waited = max(timeout, round(elapsed, 1))
    if code == VIR_ERR_AGENT_COMMAND_TIMEOUT:
        return AgentTimeout(command=command, timeout=waited)
    if code == VIR_ERR_AGENT_UNRESPONSIVE:
        # libvirt < 11.2 uses 86 both for a closed channel (at once) and for
        # a reply that never came ("not available for now", after timeout).
        if 'not connected' in lowered:
            return AgentNotConnected()
        if 'not available for now' in lowered or elapsed >= 0.9 * timeout:
            return AgentTimeout(command=command, timeout=waited)
        return AgentNotConnected()
    if 'unable to encode message payload' in lowered:
        return AgentCommandFailed(command=command, reason=_REPLY_TOO_LARGE)
    if 'no complete agent response' in lowered:
        return AgentCommandFailed(command=command, reason=_REPLY_OVER_LIMIT)
    if 'has been disabled' in lowered:
        if 'frozen state' in lowered:
            return AgentCommandDisabled(_FROZEN_MSG % {'command': command},
                                        command=command)
        return AgentCommandDisabled(command=command)
    return AgentCommandFailed(command=command, reason=_agent_reason(text))


def _poll_delay(elapsed):
    return min(_POLL_MAX, max(_POLL_MIN, elapsed * _POLL_FRACTION))


def _decode_output(data, max_bytes):
    raw = base64.b64decode(data) if data else b''
    return raw[:max_bytes], len(raw) > max_bytes


class GuestAgent:
    """The guest agent of one domain.

    domain may be a libvirt.virDomain or nova's tpool proxy of one; qemu is
    the libvirt_qemu module or its tpool proxy. No state is shared between
    instances except the caches (RESULTS, AGENT_INFO by default);
    callers serialise per instance.
    """

    def __init__(self, domain, timeout=10.0, *, qemu=None, results=None,
                 agent_info=None, max_output_bytes=16 * 1024 * 1024):
        self._domain = domain
        self.timeout = timeout
        self._qemu = qemu or libvirt_qemu
        self._results = RESULTS if results is None else results
        self._agent_info = AGENT_INFO if agent_info is None else agent_info
        self.max_output_bytes = max_output_bytes
        self._uuid = None

    @contextlib.contextmanager
    def _translated(self, command, timeout):
        start = time.monotonic()
        try:
            yield
        except libvirt.libvirtError as ex:
            elapsed = time.monotonic() - start
            error = _translate(ex, command, timeout, elapsed)
            LOG.debug('Agent command %(command)s failed after %(elapsed).3f '
                      's: %(error)s', {'command': command, 'elapsed': elapsed,
                                       'error': type(error).__name__})
            if isinstance(error, (AgentNotConnected, AgentCommandDisabled)):
                self._agent_info.discard(self._domain_uuid())
            raise error from ex
        except UnicodeDecodeError as ex:
            # libvirt-python could not even build the libvirtError: the
            # guest answered in a non-UTF-8 codepage (nova bug #1727643).
            raise AgentCommandFailed(
                command=command,
                reason=_('libvirt could not decode the text the guest '
                         'agent sent as UTF-8')) from ex

    def _call(self, command, arguments=None, timeout=None):
        """Run a raw agent command; return the value of its "return"."""
        timeout = self.timeout if timeout is None else timeout
        request = {'execute': command}
        if arguments is not None:
            request['arguments'] = arguments
        with self._translated(command, timeout):
            reply = self._qemu.qemuAgentCommand(
                self._domain, jsonutils.dumps(request), _seconds(timeout), 0)
        if isinstance(reply, (bytes, bytearray)):
            reply = bytes(reply).decode('utf-8', 'replace')
        try:
            return jsonutils.loads(reply)['return']
        except (TypeError, ValueError, KeyError):
            raise AgentCommandFailed(
                command=command,
                reason=_('the reply is not a guest agent result'))

    def _dedicated(self, command, method, *args):
        """Call a dedicated virDomain agent API under the response timeout."""
        with self._translated(command, self.timeout):
            self._domain.agentSetResponseTimeout(_seconds(self.timeout), 0)
            return getattr(self._domain, method)(*args)

    def ping(self):
        self._call('guest-ping')

    def info(self):
        reply = self._call('guest-info')
        commands = {c['name']: bool(c.get('enabled', True))
                    for c in reply.get('supported_commands', ())}
        return AgentInfo(version=reply.get('version', ''),
                         commands=types.MappingProxyType(commands))

    def require(self, *commands):
        """guest-info, raising AgentCommandDisabled for the first command
        the guest's qemu-ga lacks or has disabled.

        A guest-info that showed them all enabled is reused for a while
        (see AGENT_INFO); a refusal is never reused, so that enabling a
        command in the guest takes effect at the next call.
        """
        uuid = self._domain_uuid()
        info = self._agent_info.get(uuid)
        if info is not None and all(map(info.is_enabled, commands)):
            return info
        info = self.info()
        self._agent_info.put(uuid, info)
        for command in commands:
            if command not in info.commands:
                raise AgentCommandDisabled(
                    _ABSENT_MSG % {'command': command,
                                   'version': info.version},
                    command=command)
            if not info.is_enabled(command):
                raise AgentCommandDisabled(command=command)
        return info

    def set_user_password(self, user, password, crypted=False):
        flags = VIR_DOMAIN_PASSWORD_ENCRYPTED if crypted else 0
        start = time.monotonic()
        self._dedicated('guest-set-user-password', 'setUserPassword',
                        user, password, flags)
        LOG.debug('Set the password of guest user %(user)s (crypted: '
                  '%(crypted)s) in %(elapsed).3f s',
                  {'user': user, 'crypted': crypted,
                   'elapsed': time.monotonic() - start})

    def exec_start(self, argv, env=None, stdin=b''):
        """Start argv (no shell) with output capture; return its pid.

        env (a mapping or "K=V" strings) replaces the environment; stdin
        bytes are written to the process and its stdin is then closed.
        """
        if isinstance(env, collections.abc.Mapping):
            env = ['%s=%s' % item for item in env.items()]
        arguments = {'path': argv[0], 'arg': list(argv[1:]),
                     'capture-output': True}
        if env is not None:
            arguments['env'] = list(env)
        if stdin:
            arguments['input-data'] = base64.b64encode(stdin).decode('ascii')
        pid = self._call('guest-exec', arguments)['pid']
        # A kept result under this pid belongs to an earlier process (the
        # guest rebooted or its pids wrapped around).
        self._results.discard((self._domain_uuid(), pid))
        LOG.debug('guest-exec started pid %(pid)s (%(args)d arguments, '
                  '%(env)d environment entries, %(stdin)d bytes of input)',
                  {'pid': pid, 'args': len(argv) - 1, 'env': len(env or ()),
                   'stdin': len(stdin)})
        return pid

    def _domain_uuid(self):
        if self._uuid is None:
            self._uuid = self._domain.UUIDString()
        return self._uuid

    def exec_status(self, pid):
        """The process's state; once it exited, the same final result
        on every call until the kept copy expires.
        """
        uuid = self._domain_uuid()
        result = self._results.get((uuid, pid))
        if result is not None:
            return result
        try:
            status = self._call('guest-exec-status', {'pid': pid})
        except AgentCommandFailed as ex:
            if "'pid'" not in ex.kwargs['reason']:
                raise
            # A concurrent caller may have collected the one-shot result.
            result = self._results.get((uuid, pid))
            if result is None:
                raise ExecPidUnknown(pid=pid) from ex
            return result
        stdout, stdout_cut = _decode_output(status.get('out-data'),
                                            self.max_output_bytes)
        stderr, stderr_cut = _decode_output(status.get('err-data'),
                                            self.max_output_bytes)
        result = ExecResult(
            pid=pid, exited=bool(status.get('exited')),
            exitcode=status.get('exitcode'), signal=status.get('signal'),
            stdout=stdout, stderr=stderr,
            stdout_truncated=stdout_cut or bool(status.get('out-truncated')),
            stderr_truncated=stderr_cut or bool(status.get('err-truncated')))
        if result.exited:
            self._results.put((uuid, pid), result)
        return result

    def exec_run(self, argv, env=None, stdin=b'', timeout=30.0):
        """exec_start() then exec_wait(): at the deadline the result has
        exited False and the pid to ask exec_status() about later.
        """
        return self.exec_wait(self.exec_start(argv, env, stdin), timeout)

    def exec_wait(self, pid, timeout=30.0):
        """Poll a started command until it exits or timeout seconds pass.

        exec_run() in two steps, for callers that must know the pid even
        when a poll fails.
        """
        start = time.monotonic()
        deadline = start + timeout
        polls = 0
        while True:
            now = time.monotonic()
            time.sleep(max(0.0, min(_poll_delay(now - start), deadline - now)))
            result = self.exec_status(pid)
            polls += 1
            if result.exited or time.monotonic() >= deadline:
                break
        LOG.debug('guest-exec pid %(pid)s %(state)s after %(elapsed).3f s '
                  '(%(polls)d polls, %(out)d+%(err)d output bytes)',
                  {'pid': pid, 'polls': polls,
                   'state': 'exited' if result.exited else 'still running',
                   'elapsed': time.monotonic() - start,
                   'out': len(result.stdout), 'err': len(result.stderr)})
        return result

    def fs_freeze(self, mountpoints=None):
        count = self._dedicated('guest-fsfreeze-freeze', 'fsFreeze',
                                list(mountpoints) if mountpoints else None, 0)
        LOG.debug('Froze %d guest filesystems', count)
        return count

    def fs_thaw(self):
        count = self._dedicated('guest-fsfreeze-thaw', 'fsThaw', None, 0)
        LOG.debug('Thawed %d guest filesystems', count)
        return count

    def fs_freeze_status(self):
        return self._call('guest-fsfreeze-status')

    # The read-only queries use the raw commands: their replies keep every
    # field qemu-ga reports (fsInfo()/guestInfo() flatten or drop some), and
    # the per-call timeout leaves the domain's response timeout alone.
    def fs_info(self):
        return self._call('guest-get-fsinfo')

    def os_info(self):
        return self._call('guest-get-osinfo')

    def users(self):
        return self._call('guest-get-users')
