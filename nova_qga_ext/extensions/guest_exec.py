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

"""guestExec and guestExecStatus: run a command in the guest, get its result.

``POST /servers/{id}/action``::

    {"guestExec": {"command": ["/bin/sh", "-c", "echo hi"],
                   "env": ["LANG=C"], "input": "<base64>",
                   "timeout": 30, "wait": true}}

* ``wait`` true (default): 200 with ``{"guestExec": {"pid", "exited",
  "exitcode", "signal", "stdout", "stderr", "stdout_truncated",
  "stderr_truncated"}}``; stdout and stderr are base64. A command still
  running at ``timeout`` seconds is **not** killed (qemu-ga cannot): the
  answer is then 200 with ``"exited": false`` and its pid, and
  ``guestExecStatus`` gives the result later.
* ``wait`` false: 202 with ``{"guestExec": {"pid": N}}``; ``timeout`` is
  refused with it (nothing would wait).
* ``{"guestExecStatus": {"pid": N}}``: 200 in the same shape; the final
  result is kept on the compute node (qemu-ga reports it only once), so a
  status call can be retried. 404 for a pid the guest does not know. It is
  allowed while the server has a task in progress (it changes nothing),
  not while it is locked (its agent is not touched at all then).
* An agent failure after the command started (a poll timed out, 504)
  names the command's pid in the error, since it may still be running.

qemu-ga semantics apply: no shell (use ``/bin/sh -c``), ``env`` replaces
the environment, the command runs as qemu-ga's user (root).

Caps come from ``[qga_ext]``: ``max_timeout``, ``default_timeout`` and
``max_input_bytes`` on API nodes, ``max_output_bytes`` on compute nodes,
``allowed_commands`` on both (403 when the executable is not listed).

Audit: each guestExec is an instance action ``guestExec`` whose message
is the argv (first 255 characters; nova overwrites it with "Error" when
the event fails), with the compute event :data:`EVENT`; nova-api also logs
the whole argv at INFO with the request id. The input and the environment
values are never recorded: not in logs at any level, exceptions, instance
actions or notifications. Only the environment variables' names are logged.

Concurrency: the per-instance lock is taken around each agent call (the
start and every status poll), not for the whole wait. Other agent work on
the instance (a password change, a quiesced snapshot's freeze) runs between
two polls instead of waiting up to ``max_timeout``; a poll that comes while
a snapshot holds the guest frozen waits for the thaw, rather than being
refused by the frozen qemu-ga.
"""

import base64
import binascii
import functools
import shlex

from nova.api.openstack import wsgi
from nova.compute import utils as compute_utils
from nova import exception as nova_exception
from nova import objects
from nova.policies import base as nova_policies
from oslo_config import cfg
from oslo_log import log as logging
from oslo_policy import policy
import webob.exc

from nova_qga_ext import agent
from nova_qga_ext.api import controller
from nova_qga_ext.extensions import base
from nova_qga_ext.i18n import _
from nova_qga_ext import policies
from nova_qga_ext import rpc
from nova_qga_ext.virt import driver as virt_driver

LOG = logging.getLogger(__name__)

EXEC_ACTION = 'guestExec'
STATUS_ACTION = 'guestExecStatus'
RULE = policies.RULE_PREFIX + 'guest-exec'
#: The instance action event of the compute side.
EVENT = 'qga_ext_guest_exec'

#: Both must be enabled in the guest: a command started without a way to
#: collect its result would run blind.
AGENT_COMMANDS = ('guest-exec', 'guest-exec-status')

# Structural bounds; nova's request body limit ([oslo_middleware]
# max_request_body_size, 112 KiB by default) is usually reached first.
MAX_ARGS = 1024
MAX_ENV = 1024
MAX_ITEM_LENGTH = 65536
# qemu-ga's pids are guest process ids (Windows: DWORDs).
MAX_PID = 2 ** 32 - 1
# The instance action's message column is a String(255).
_MESSAGE_LENGTH = 255
_ELLIPSIS = '...'

# A request crosses libvirt's RPC as one string of at most 4 MiB.
_MAX_INPUT_CAP = 3 * 1024 * 1024
# qemu-ga's own cap per stream (GUEST_EXEC_MAX_OUTPUT).
_MAX_OUTPUT_CAP = 16 * 1024 * 1024

CONFIG_OPTS = [
    cfg.IntOpt(
        'max_timeout',
        default=300,
        min=1,
        help='API nodes: the largest "timeout", in seconds, a guestExec '
             'request may ask to wait for its command. While it waits, the '
             'request holds a nova-api worker and an RPC thread of '
             'nova-compute, so load balancers in front of nova-api need a '
             'longer timeout than this. Commands that run longer should be '
             'started with "wait": false and polled with guestExecStatus. '
             'The command itself is never killed: qemu-ga cannot.'),
    cfg.IntOpt(
        'default_timeout',
        default=30,
        min=1,
        help='API nodes: seconds a guestExec request without "timeout" '
             'waits for its command; capped by max_timeout. A command still '
             'running then is reported with "exited": false and its pid.'),
    cfg.IntOpt(
        'max_input_bytes',
        default=64 * 1024,
        min=0,
        max=_MAX_INPUT_CAP,
        help='API nodes: the largest standard input of a guestExec '
             'command, in bytes after base64 decoding; larger input is '
             'refused with 400, and 0 refuses any input. Base64 adds a '
             'third, so input beyond about 80 KiB also needs a larger '
             '[oslo_middleware] max_request_body_size. libvirt passes the '
             'whole request as one string of at most 4 MiB, hence the '
             'upper bound of 3 MiB.'),
    cfg.IntOpt(
        'max_output_bytes',
        default=1024 * 1024,
        min=0,
        max=_MAX_OUTPUT_CAP,
        help='Compute nodes: the bytes of stdout, and separately of stderr, '
             'that a guestExec result returns; the rest is dropped and the '
             'stream flagged "truncated", as qemu-ga does itself beyond 16 '
             'MiB. This bounds the API response and the result kept for '
             'guestExecStatus, not the guest\'s reply: libvirt loses a '
             'reply over 4 MiB, so commands should keep stdout and stderr '
             'together under about 3 MiB (redirect more to a file).'),
    cfg.ListOpt(
        'allowed_commands',
        default=[],
        help='API and compute nodes: if set, the executables guestExec may '
             'run, as absolute paths compared exactly with the first '
             'element of "command" (so clients must give that path, not a '
             'name to look up in PATH); any other command is refused with '
             '403 before it reaches the guest. Empty: any command. Listing '
             'a shell or an interpreter (/bin/sh, /usr/bin/env, python3) '
             'allows everything. The API node checks its list first; the '
             'compute node, which runs the command, checks its own again.'),
]

POLICY_RULES = [
    policy.DocumentedRuleDefault(
        name=RULE,
        check_str=nova_policies.ADMIN,
        description='Run a command in a server through the QEMU guest '
                    'agent, as the agent\'s user (root or LocalSystem), and '
                    'read the status and output of such a command by pid. '
                    'One rule covers both: a command\'s output is as '
                    'sensitive as the right to run it.',
        operations=[
            {'method': 'POST',
             'path': '/servers/{server_id}/action (%s)' % EXEC_ACTION},
            {'method': 'POST',
             'path': '/servers/{server_id}/action (%s)' % STATUS_ACTION},
        ],
        scope_types=['project']),
]

# No NUL, and no lone surrogate: JSON can carry one ("\ud800") and Python
# decodes it, but it has no UTF-8 form for libvirt and qemu-ga.
_BAD = '\\x00\\ud800-\\udfff'
_C_STRING = '^[^%s]*$' % _BAD

EXEC_SCHEMA = {
    'type': 'object',
    'properties': {
        EXEC_ACTION: {
            'type': 'object',
            'properties': {
                'command': {
                    'type': 'array',
                    'minItems': 1,
                    'maxItems': MAX_ARGS,
                    # The executable must be named; later arguments may be
                    # empty strings, which are meaningful ("" as a value).
                    'prefixItems': [{
                        'type': 'string', 'minLength': 1,
                        'maxLength': MAX_ITEM_LENGTH, 'pattern': _C_STRING}],
                    'items': {
                        'type': 'string', 'maxLength': MAX_ITEM_LENGTH,
                        'pattern': _C_STRING},
                },
                'env': {
                    'type': 'array',
                    'maxItems': MAX_ENV,
                    'items': {
                        'type': 'string', 'maxLength': MAX_ITEM_LENGTH,
                        'pattern': '^[^=%s]+=[^%s]*$' % (_BAD, _BAD)},
                },
                'input': {'type': 'string'},
                'timeout': {'type': 'integer', 'minimum': 1},
                'wait': {'type': 'boolean'},
            },
            'required': ['command'],
            'additionalProperties': False,
        },
    },
    'required': [EXEC_ACTION],
    'additionalProperties': False,
}

STATUS_SCHEMA = {
    'type': 'object',
    'properties': {
        STATUS_ACTION: {
            'type': 'object',
            'properties': {
                'pid': {'type': 'integer', 'minimum': 1, 'maximum': MAX_PID},
            },
            'required': ['pid'],
            'additionalProperties': False,
        },
    },
    'required': [STATUS_ACTION],
    'additionalProperties': False,
}


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _secrets(body):
    """The input and every string of env, whatever their shape.

    Longest first: masking a short secret inside a longer one first would
    leave the rest of the longer one in the message.
    """
    entity = body.get(EXEC_ACTION) if isinstance(body, dict) else None
    if not isinstance(entity, dict):
        return []
    found = set(_strings(entity.get('env'))) | set(
        _strings(entity.get('input')))
    return sorted((s for s in found if s), key=len, reverse=True)


def check_allowed(allowed_commands, command):
    """Raise Forbidden unless the executable is allowed.

    :param allowed_commands: ``[qga_ext] allowed_commands``; empty allows
        any executable.
    """
    if allowed_commands and command[0] not in allowed_commands:
        raise nova_exception.Forbidden(_(
            'Command %s is not allowed by the operator ([qga_ext] '
            'allowed_commands lists the executables guestExec may run, by '
            'absolute path).') % command[0])


def action_message(command):
    """The argv as a shell would read it, cut to the action's message."""
    text = shlex.join(command)
    if len(text) > _MESSAGE_LENGTH:
        text = text[:_MESSAGE_LENGTH - len(_ELLIPSIS)] + _ELLIPSIS
    return text


def rpc_timeout(exec_timeout, wait):
    """Seconds the API waits for the compute node's reply.

    A waited exec gets its own timeout plus nova's ``rpc_response_timeout``
    for everything around it (the lock, starting, the last poll); a
    ``wait`` false call only nova's default.
    """
    if not wait:
        return None
    return exec_timeout + cfg.CONF.rpc_response_timeout


def result_dict(result):
    """The REST shape of an ``agent.ExecResult``; bytes as base64."""
    return {
        'pid': result.pid,
        'exited': result.exited,
        'exitcode': result.exitcode,
        'signal': result.signal,
        'stdout': base64.b64encode(result.stdout).decode('ascii'),
        'stderr': base64.b64encode(result.stderr).decode('ascii'),
        'stdout_truncated': result.stdout_truncated,
        'stderr_truncated': result.stderr_truncated,
    }


class GuestExecController(controller.ActionController):

    @wsgi.response(200)
    @wsgi.expected_errors((400, 403, 404, 409, 504))
    @wsgi.action(EXEC_ACTION)
    @controller.secret_schema(EXEC_SCHEMA, secrets=_secrets)
    def guest_exec(self, req, id, body):
        context = req.environ['nova.context']
        conf = self.extension.conf.qga_ext
        entity = body[EXEC_ACTION]
        command = entity['command']
        env = entity.get('env')
        wait = entity.get('wait', True)
        timeout = self._timeout(entity, wait, conf)
        stdin = self._input(entity, conf)
        instance = self.get_instance(context, id, RULE)
        with controller.compute_errors_as_http():
            check_allowed(conf.allowed_commands, command)
        self.check_ready(instance)

        LOG.info('guestExec by user %(user)s of project %(project)s: argv '
                 '%(argv)s, environment names %(env)s, %(input)d bytes of '
                 'input, timeout %(timeout)s s, wait %(wait)s',
                 {'user': context.user_id, 'project': context.project_id,
                  'argv': shlex.join(command),
                  'env': [entry.partition('=')[0] for entry in env or ()],
                  'input': len(stdin), 'timeout': timeout, 'wait': wait},
                 instance=instance)
        self._record_action(context, instance, command)
        result = self.call_compute(
            context, instance, 'guest_exec',
            rpc_timeout=rpc_timeout(timeout, wait), command=command,
            env=env, input=entity.get('input', ''), timeout=timeout,
            wait=wait)
        if wait:
            return {EXEC_ACTION: result}
        return wsgi.ResponseObject({EXEC_ACTION: result}, code=202)

    @wsgi.response(200)
    @wsgi.expected_errors((400, 403, 404, 409, 504))
    @wsgi.action(STATUS_ACTION)
    @controller.secret_schema(STATUS_SCHEMA, secrets=lambda body: [])
    def guest_exec_status(self, req, id, body):
        context = req.environ['nova.context']
        instance = self.get_instance(context, id, RULE)
        # Read-only, so a task in progress is no reason to refuse; a locked
        # server's agent is not touched at all.
        self.check_ready(instance, allow_task=True)
        # JSON Schema counts 1000.0 as an integer; qemu-ga refuses it.
        result = self.call_compute(context, instance, 'guest_exec_status',
                                   pid=int(body[STATUS_ACTION]['pid']))
        return {STATUS_ACTION: result}

    @staticmethod
    def _timeout(entity, wait, conf):
        if 'timeout' in entity:
            if not wait:
                raise webob.exc.HTTPBadRequest(explanation=_(
                    '"timeout" is meaningless with "wait": false; poll '
                    'guestExecStatus instead.'))
            if entity['timeout'] > conf.max_timeout:
                raise webob.exc.HTTPBadRequest(explanation=_(
                    '"timeout" %(timeout)d exceeds the maximum of '
                    '%(max)d seconds ([qga_ext] max_timeout); start longer '
                    'commands with "wait": false and poll '
                    'guestExecStatus.') % {'timeout': entity['timeout'],
                                           'max': conf.max_timeout})
            # JSON Schema counts 30.0 as an integer too.
            return int(entity['timeout'])
        return min(conf.default_timeout, conf.max_timeout)

    @staticmethod
    def _input(entity, conf):
        encoded = entity.get('input', '')
        # The decoded length is known from the encoded one: refuse an
        # oversized input before decoding it.
        if len(encoded) // 4 * 3 - 2 > conf.max_input_bytes:
            raise webob.exc.HTTPBadRequest(explanation=_(
                '"input" is larger than the maximum of %(max)d bytes '
                '([qga_ext] max_input_bytes).') % {
                    'max': conf.max_input_bytes})
        try:
            stdin = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise webob.exc.HTTPBadRequest(explanation=_(
                '"input" is not valid base64.')) from None
        if len(stdin) > conf.max_input_bytes:
            raise webob.exc.HTTPBadRequest(explanation=_(
                '"input" is %(size)d bytes, more than the maximum of '
                '%(max)d bytes ([qga_ext] max_input_bytes).') % {
                    'size': len(stdin), 'max': conf.max_input_bytes})
        return stdin

    @staticmethod
    def _record_action(context, instance, command):
        """Start the instance action, its message the argv.

        ``create()`` rather than nova's ``action_start()``, which sets no
        message; the compute event attaches to it by request id, and sets
        its ``updated_at``, which is no field of the object.
        """
        values = objects.InstanceAction.pack_action_start(
            context, instance.uuid, EXEC_ACTION)
        del values['updated_at']
        objects.InstanceAction(context, message=action_message(command),
                               **values).create()


def _started_then_failed(error, pid):
    """The nova exception of an agent error after the command started.

    The command may well still run in the guest; its pid is the caller's
    only way to its result.
    """
    nova_error = virt_driver.to_nova_exception(error)
    return type(nova_error)(
        message=_('%(error)s The command had been started as pid %(pid)d '
                  'and may still be running; ask guestExecStatus for its '
                  'result.') % {'error': nova_error.format_message(),
                                'pid': pid},
        pid=pid, **nova_error.kwargs)


class _PerCallLock:
    """libvirt_qemu whose every agent command holds the instance lock."""

    def __init__(self, qemu, lock):
        self._qemu = qemu
        self._lock = lock

    def qemuAgentCommand(self, *args):
        with self._lock():
            return self._qemu.qemuAgentCommand(*args)


class GuestExecEndpoint:
    """Compute side of guestExec and guestExecStatus."""

    target = rpc.TARGET

    def __init__(self, extension, driver):
        self._conf = extension.conf.qga_ext
        self._driver = driver

    def _agent(self, instance):
        return self._driver.guest_agent(
            instance, max_output_bytes=self._conf.max_output_bytes,
            qemu=_PerCallLock(self._driver.qemu_api, functools.partial(
                self._driver.instance_lock, instance)))

    def guest_exec(self, context, instance, command, env, input, timeout,
                   wait):
        host = self._driver.virtapi._compute.host
        with compute_utils.EventReporter(context, EVENT, host,
                                         instance.uuid):
            check_allowed(self._conf.allowed_commands, command)
            stdin = base64.b64decode(input)
            with virt_driver.agent_errors_as_nova_exceptions():
                guest_agent = self._agent(instance)
                guest_agent.require(*AGENT_COMMANDS)
                pid = guest_agent.exec_start(command, env, stdin)
                if not wait:
                    return {'pid': pid}
                try:
                    return result_dict(guest_agent.exec_wait(pid, timeout))
                except agent.AgentError as error:
                    raise _started_then_failed(error, pid) from None

    def guest_exec_status(self, context, instance, pid):
        with virt_driver.agent_errors_as_nova_exceptions():
            return result_dict(self._agent(instance).exec_status(pid))


class GuestExec(base.Extension):
    name = 'guest_exec'
    CONFIG_OPTS = CONFIG_OPTS
    POLICY_RULES = POLICY_RULES
    API_CONTROLLER = GuestExecController

    def rpc_endpoint(self, driver):
        return GuestExecEndpoint(self, driver)
