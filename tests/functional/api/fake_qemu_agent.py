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

"""An in-memory QEMU guest agent behind nova's fakelibvirt.

fakelibvirt has no ``libvirt_qemu`` and its agent methods are no-ops with the
wrong signatures. :class:`FakeQemuAgentFixture` supplies both: a fake
``libvirt_qemu`` module whose ``qemuAgentCommand`` speaks the qemu-ga
protocol, and ``Domain.agentSetResponseTimeout``, ``setUserPassword``,
``fsFreeze(mountpoints=None, flags=0)`` and ``fsThaw`` routed to the same
per-domain :class:`FakeGuestAgent`. Failures are raised as libvirt raises
them (codes and message texts of libvirt 9 with qemu-ga 7.2), so the
plugin's error translation runs for real.

The agent of a domain is found by the domain's UUID, which nova makes the
instance's UUID, and outlives the domain object: nova re-defines domains
(snapshots) and the agent state must survive that.
"""

import base64
import dataclasses
import json
import shlex
import threading
import types

import fixtures
from nova.tests.fixtures import libvirt as fakelibvirt

QEMU_GA_VERSION = '7.2.22'

# What qemu-ga 7.2 on Linux lists in guest-info.
SUPPORTED_COMMANDS = (
    'guest-exec', 'guest-exec-status', 'guest-file-close', 'guest-file-open',
    'guest-file-read', 'guest-file-write', 'guest-fsfreeze-freeze',
    'guest-fsfreeze-freeze-list', 'guest-fsfreeze-status',
    'guest-fsfreeze-thaw', 'guest-fstrim', 'guest-get-fsinfo',
    'guest-get-host-name', 'guest-get-osinfo', 'guest-get-time',
    'guest-get-timezone', 'guest-get-users', 'guest-get-vcpus', 'guest-info',
    'guest-network-get-interfaces', 'guest-ping', 'guest-set-time',
    'guest-set-user-password', 'guest-shutdown', 'guest-sync',
    'guest-sync-delimited',
)

# Commands qemu-ga still runs while the filesystems are frozen.
_ALLOWED_WHILE_FROZEN = frozenset((
    'guest-ping', 'guest-info', 'guest-sync', 'guest-sync-delimited',
    'guest-fsfreeze-status', 'guest-fsfreeze-thaw'))

_AGENT_CHANNEL = 'org.qemu.guest_agent.0'

# Real libvirt's values; fakelibvirt lacks the first and gives
# VIR_ERR_INTERNAL_ERROR a made-up number.
VIR_DOMAIN_PASSWORD_ENCRYPTED = 1
VIR_ERR_INTERNAL_ERROR = 1


def libvirt_error(code, message):
    return fakelibvirt.make_libvirtError(
        fakelibvirt.libvirtError, message, error_code=code,
        error_domain=fakelibvirt.VIR_FROM_DOMAIN, error_message=message)


def agent_not_connected():
    return libvirt_error(
        fakelibvirt.VIR_ERR_AGENT_UNRESPONSIVE,
        'Guest agent is not responding: QEMU guest agent is not connected')


def agent_timeout():
    """libvirt < 11.2's error for a command qemu-ga never answered."""
    return libvirt_error(
        fakelibvirt.VIR_ERR_AGENT_UNRESPONSIVE,
        'Guest agent is not responding: Guest agent not available for now')


def agent_refusal(command, reason):
    """The error libvirt < 11.2 raises when qemu-ga answers with an error."""
    return libvirt_error(
        VIR_ERR_INTERNAL_ERROR,
        "internal error: unable to execute QEMU agent command '%s': %s" % (
            command, reason))


@dataclasses.dataclass
class FakeProcess:
    """A process started by guest-exec.

    It reports ``exited: false`` to ``running_polls`` status calls, then its
    result; with ``hang`` it runs until :meth:`finish` is called.
    """

    argv: list
    env: list
    stdin: bytes
    stdout: bytes = b''
    stderr: bytes = b''
    exitcode: int = 0
    signal: int | None = None
    running_polls: int = 0
    hang: bool = False
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    collected: bool = False

    def finish(self, exitcode=0, stdout=b'', stderr=b'', signal=None):
        self.hang = False
        self.running_polls = 0
        self.exitcode, self.signal = exitcode, signal
        self.stdout, self.stderr = stdout, stderr


class ExecNotFound(Exception):
    """Raised by an exec handler for a program that does not exist."""


def default_exec(process):
    """A few programs a guest always has; anything else does not exist."""
    program, args = process.argv[0].rsplit('/', 1)[-1], process.argv[1:]
    if program == 'echo':
        process.stdout = (' '.join(args) + '\n').encode()
    elif program == 'cat':
        process.stdout = process.stdin
    elif program == 'env':
        process.stdout = ''.join(
            entry + '\n' for entry in process.env).encode()
    elif program == 'true':
        pass
    elif program == 'false':
        process.exitcode = 1
    elif program == 'sh' and args[:1] == ['-c']:
        # Only "exit N", which tests use for an exit code.
        words = shlex.split(args[1])
        if words[:1] != ['exit']:
            raise ExecNotFound(args[1])
        process.exitcode = int(words[1])
    else:
        raise ExecNotFound(process.argv[0])


class FakeGuestAgent:
    """qemu-ga in one guest, and the state of that guest it touches.

    Attributes tests set: ``connected`` (False: qemu-ga is down), ``hung``
    (True: qemu-ga takes the command but never answers), ``disabled`` (the
    commands blocked in qemu-ga's configuration), ``users`` (the accounts
    that exist), ``exec_handler`` (fills a FakeProcess from its argv, env and
    stdin; raise ExecNotFound for a missing program), ``filesystems``,
    ``handlers`` (command name -> function taking the command's arguments
    as keywords and returning its "return" value, or raising e.g.
    ``agent_timeout()`` / ``agent_refusal(command, reason)``; it replaces
    the built-in behaviour and runs after the reachability and
    disabled-command checks, under the agent's lock).
    Attributes tests read: ``passwords`` (user -> (password, crypted)),
    ``commands`` (every command run, raw or dedicated, in order),
    ``processes`` (pid -> FakeProcess), ``frozen``, ``response_timeouts``
    (values given to agentSetResponseTimeout), ``command_timeouts`` (values
    given to qemuAgentCommand).
    """

    def __init__(self, uuid):
        self.uuid = uuid
        self.connected = True
        self.hung = False
        self.disabled = set()
        self.users = {'root'}
        self.passwords = {}
        self.exec_handler = default_exec
        self.handlers = {}
        self.filesystems = ['/', '/boot']
        self.frozen = False
        self.commands = []
        self.processes = {}
        self.response_timeouts = []
        self.command_timeouts = []
        self._next_pid = 1000
        self._lock = threading.Lock()

    def disable(self, *commands):
        """Block commands, as qemu-ga's --block-rpcs does."""
        self.disabled.update(commands)

    def process(self, pid=None):
        """The process of ``pid``, or of the last guest-exec."""
        return self.processes[max(self.processes) if pid is None else pid]

    # -- the libvirt side -------------------------------------------------

    def run(self, domain, command, arguments=None):
        """Run one agent command as libvirt would; return its "return"."""
        with self._lock:
            self.commands.append(command)
            self._check_reachable(domain, command)
            if command not in SUPPORTED_COMMANDS:
                raise agent_refusal(
                    command, 'The command %s has not been found' % command)
            if command in self.disabled:
                raise agent_refusal(
                    command,
                    'The command %s has been disabled for this instance' %
                    command)
            if self.frozen and command not in _ALLOWED_WHILE_FROZEN:
                raise agent_refusal(
                    command, 'Command %s has been disabled: the agent is in '
                             'frozen state' % command)
            handler = self.handlers.get(command) or getattr(
                self, '_' + command.replace('-', '_'), None)
            if handler is None:
                return {}
            return handler(**(arguments or {}))

    def _check_reachable(self, domain, command):
        if not domain.isActive():
            raise libvirt_error(
                fakelibvirt.VIR_ERR_OPERATION_INVALID,
                'Requested operation is not valid: domain is not running')
        if not getattr(domain, '_qga_channel', True):
            raise libvirt_error(
                fakelibvirt.VIR_ERR_ARGUMENT_UNSUPPORTED,
                'argument unsupported: QEMU guest agent is not configured')
        if not self.connected:
            raise agent_not_connected()
        if self.hung:
            raise agent_timeout()

    # -- qemu-ga commands ---------------------------------------------------

    def _guest_ping(self):
        return {}

    def _guest_info(self):
        return {'version': QEMU_GA_VERSION,
                'supported_commands': [
                    {'name': name, 'enabled': name not in self.disabled,
                     'success-response': name != 'guest-shutdown'}
                    for name in SUPPORTED_COMMANDS]}

    def _guest_set_user_password(self, username, password, crypted):
        if username not in self.users:
            raise agent_refusal(
                'guest-set-user-password',
                'child process has failed to set user password')
        self.passwords[username] = (
            base64.b64decode(password).decode(), crypted)
        return {}

    def _guest_exec(self, path, arg=(), env=(), **kwargs):
        process = FakeProcess(
            argv=[path] + list(arg), env=list(env),
            stdin=base64.b64decode(kwargs.get('input-data', '')))
        try:
            self.exec_handler(process)
        except ExecNotFound as error:
            raise agent_refusal(
                'guest-exec',
                'Guest agent command failed, error was \'Failed to execute '
                'child process \u201c%s\u201d (No such file or directory)\''
                % error.args[0])
        pid = self._next_pid
        self._next_pid += 1
        self.processes[pid] = process
        return {'pid': pid}

    def _guest_exec_status(self, pid):
        process = self.processes.get(pid)
        if process is None or process.collected:
            raise agent_refusal('guest-exec-status',
                                "Invalid parameter 'pid'")
        if process.hang or process.running_polls > 0:
            process.running_polls = max(0, process.running_polls - 1)
            return {'exited': False}
        # qemu-ga frees the record once it reported the result.
        process.collected = True
        status = {'exited': True}
        if process.signal is not None:
            status['signal'] = process.signal
        else:
            status['exitcode'] = process.exitcode
        for key, data, cut in (
                ('out', process.stdout, process.stdout_truncated),
                ('err', process.stderr, process.stderr_truncated)):
            if data:
                status[key + '-data'] = base64.b64encode(data).decode()
            if cut:
                status[key + '-truncated'] = True
        return status

    def _guest_fsfreeze_freeze(self):
        self.frozen = True
        return len(self.filesystems)

    def _guest_fsfreeze_freeze_list(self, mountpoints=None):
        self.frozen = True
        return len(mountpoints) if mountpoints else len(self.filesystems)

    def _guest_fsfreeze_thaw(self):
        count = len(self.filesystems) if self.frozen else 0
        self.frozen = False
        return count

    def _guest_fsfreeze_status(self):
        return 'frozen' if self.frozen else 'thawed'

    def _guest_get_fsinfo(self):
        return [{'name': 'vda%d' % i, 'mountpoint': mountpoint,
                 'type': 'ext4', 'disk': []}
                for i, mountpoint in enumerate(self.filesystems, 1)]

    def _guest_get_osinfo(self):
        return {'id': 'debian', 'name': 'Debian GNU/Linux',
                'version-id': '12', 'kernel-release': '6.1.0-fake'}

    def _guest_get_users(self):
        return []


class FakeQemuAgentFixture(fixtures.Fixture):
    """Installs the fake agent; ``agent(uuid)`` returns a domain's agent."""

    def __init__(self):
        super().__init__()
        self._agents = {}
        self._lock = threading.Lock()

    def agent(self, uuid):
        with self._lock:
            agent = self._agents.get(uuid)
            if agent is None:
                agent = self._agents[uuid] = FakeGuestAgent(uuid)
            return agent

    def _agent_of(self, domain):
        return self.agent(domain.UUIDString())

    def setUp(self):
        super().setUp()
        qemu = types.ModuleType('libvirt_qemu')
        qemu.qemuAgentCommand = self._qemu_agent_command
        self.libvirt_qemu = qemu
        # The plugin imports libvirt itself; nova's LibvirtFixture patches
        # only nova's modules, and the errors raised here are fakelibvirt's.
        for target, value in (
                ('nova_qga_ext.agent.libvirt', fakelibvirt),
                ('nova_qga_ext.agent.libvirt_qemu', qemu),
                ('nova_qga_ext.virt.driver.libvirt_qemu', qemu)):
            self.useFixture(fixtures.MonkeyPatch(target, value))

        fixture = self
        domain_class = fakelibvirt.Domain
        parse_definition = domain_class._parse_definition

        # nova adds the agent channel to the domain XML when the image has
        # hw_qemu_guest_agent=yes; without it libvirt says "not configured".
        def _parse_definition(self, xml):
            self._qga_channel = _AGENT_CHANNEL in xml
            return parse_definition(self, xml)

        def agentSetResponseTimeout(self, timeout, flags=0):
            fixture._agent_of(self).response_timeouts.append(timeout)
            return 0

        def setUserPassword(self, user, password, flags=0):
            crypted = bool(flags & VIR_DOMAIN_PASSWORD_ENCRYPTED)
            fixture._agent_of(self).run(
                self, 'guest-set-user-password',
                {'username': user,
                 'password': base64.b64encode(password.encode()).decode(),
                 'crypted': crypted})
            return 0

        def fsFreeze(self, mountpoints=None, flags=0):
            if mountpoints:
                return fixture._agent_of(self).run(
                    self, 'guest-fsfreeze-freeze-list',
                    {'mountpoints': list(mountpoints)})
            return fixture._agent_of(self).run(self, 'guest-fsfreeze-freeze')

        def fsThaw(self, mountpoints=None, flags=0):
            return fixture._agent_of(self).run(self, 'guest-fsfreeze-thaw')

        for name, function in (
                ('_parse_definition', _parse_definition),
                ('agentSetResponseTimeout', agentSetResponseTimeout),
                ('setUserPassword', setUserPassword),
                ('fsFreeze', fsFreeze), ('fsThaw', fsThaw)):
            self.useFixture(fixtures.MonkeyPatch(
                'nova.tests.fixtures.libvirt.Domain.' + name, function))

    def _qemu_agent_command(self, domain, command, timeout, flags):
        request = json.loads(command)
        agent = self._agent_of(domain)
        agent.command_timeouts.append(timeout)
        result = agent.run(domain, request['execute'],
                           request.get('arguments'))
        return json.dumps({'return': result})
