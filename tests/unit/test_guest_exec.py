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

import base64
import json
import logging
import threading
from unittest import mock

import fixtures
from nova.compute import vm_states
from nova import exception as nova_exception
from nova.policies import base as nova_policies
from nova import test
from nova.tests.unit.api.openstack import fakes
from nova.tests.unit import fake_instance
from oslo_concurrency import lockutils
from oslo_config import cfg
import webob.exc

from nova_qga_ext import agent
from nova_qga_ext import conf as qga_conf
from nova_qga_ext import exception
from nova_qga_ext.extensions import guest_exec

CONF = cfg.CONF

ENV_SECRET = 'ENV-SECRET-41d0c2'
INPUT_SECRET = b'STDIN-SECRET-e83b5a'

RESULT = agent.ExecResult(
    pid=42, exited=True, exitcode=0, signal=None, stdout=b'\x00out\xff',
    stderr=b'err', stdout_truncated=True, stderr_truncated=False)
REST_RESULT = {
    'pid': 42, 'exited': True, 'exitcode': 0, 'signal': None,
    'stdout': base64.b64encode(b'\x00out\xff').decode(),
    'stderr': base64.b64encode(b'err').decode(),
    'stdout_truncated': True, 'stderr_truncated': False}


def b64(data):
    return base64.b64encode(data).decode()


def exec_body(command, **kwargs):
    return {'guestExec': dict(command=command, **kwargs)}


class GuestExecTestCase(test.NoDBTestCase):

    def setUp(self):
        super().setUp()
        qga_conf.register_opts(CONF, guest_exec.CONFIG_OPTS)
        self.extension = guest_exec.GuestExec(CONF)


class TestHelpers(GuestExecTestCase):

    def test_result_dict_is_the_rest_shape(self):
        self.assertEqual(REST_RESULT, guest_exec.result_dict(RESULT))
        json.dumps(guest_exec.result_dict(RESULT))

    def test_allow_list(self):
        guest_exec.check_allowed([], ['/anything'])
        guest_exec.check_allowed(['/bin/ls', '/bin/df'], ['/bin/df', '-h'])
        for command in (['/bin/sh'], ['ls'], ['/bin/../bin/ls'],
                        ['/bin/ls ']):
            error = self.assertRaises(
                nova_exception.Forbidden, guest_exec.check_allowed,
                ['/bin/ls'], command)
            self.assertIn(command[0], error.format_message())
            self.assertIn('allowed_commands', error.format_message())

    def test_rpc_timeout_sized_from_the_exec_timeout(self):
        self.flags(rpc_response_timeout=60)
        self.assertEqual(90, guest_exec.rpc_timeout(30, wait=True))
        self.assertEqual(360, guest_exec.rpc_timeout(300, wait=True))
        self.assertIsNone(guest_exec.rpc_timeout(30, wait=False))

    def test_action_message(self):
        self.assertEqual("/bin/sh -c 'echo a; exit 2' ''",
                         guest_exec.action_message(
                             ['/bin/sh', '-c', 'echo a; exit 2', '']))
        message = guest_exec.action_message(['/bin/echo', 'x' * 300])
        self.assertEqual(255, len(message))
        self.assertTrue(message.startswith('/bin/echo xxx'))
        self.assertTrue(message.endswith('...'))

    def test_secrets_longest_first(self):
        body = exec_body(['/bin/ls'], env=['A=x', 'B=A=xyz', {'C': 'nested'}],
                         input='aW5wdXQ=')
        self.assertEqual(['aW5wdXQ=', 'B=A=xyz', 'nested', 'A=x'],
                         guest_exec._secrets(body))
        self.assertEqual([], guest_exec._secrets({'guestExec': 'x'}))
        self.assertEqual([], guest_exec._secrets([]))

    def test_policy_rule(self):
        (rule,) = guest_exec.POLICY_RULES
        self.assertEqual('os_compute_api:qga-ext:guest-exec', rule.name)
        self.assertEqual(nova_policies.ADMIN, rule.check_str)
        self.assertEqual(
            ['/servers/{server_id}/action (guestExec)',
             '/servers/{server_id}/action (guestExecStatus)'],
            [operation['path'] for operation in rule.operations])

    def test_options_documented(self):
        names = [opt.name for opt in guest_exec.CONFIG_OPTS]
        self.assertEqual(['max_timeout', 'default_timeout', 'max_input_bytes',
                          'max_output_bytes', 'allowed_commands'], names)
        for opt in guest_exec.CONFIG_OPTS:
            self.assertGreater(len(opt.help), 80, opt.name)


class ControllerTestCase(GuestExecTestCase):

    def setUp(self):
        super().setUp()
        self.controller = guest_exec.GuestExecController(self.extension)
        self.instance = fake_instance.fake_instance_obj(
            None, vm_state=vm_states.ACTIVE, task_state=None, locked=False,
            host='compute1')
        self.get_instance = self.useFixture(fixtures.MockPatchObject(
            self.controller, 'get_instance',
            return_value=self.instance)).mock
        self.call_compute = self.useFixture(fixtures.MockPatchObject(
            self.controller, 'call_compute',
            return_value=REST_RESULT)).mock
        self.actions = []
        self.useFixture(fixtures.MonkeyPatch(
            'nova.objects.InstanceAction.create',
            lambda action: self.actions.append(action)))
        self.req = fakes.HTTPRequest.blank('', use_admin_context=True)

    def guest_exec(self, body):
        return self.controller.guest_exec(self.req, self.instance.uuid,
                                          body=body)


class TestSchema(ControllerTestCase):

    def setUp(self):
        super().setUp()
        self.flags(max_timeout=60, max_input_bytes=8, group='qga_ext')

    # name -> body; each is refused with 400 before anything is done.
    INVALID = {
        'not an object': {'guestExec': ['/bin/ls']},
        'no command': {'guestExec': {}},
        'command not a list': exec_body('/bin/ls'),
        'command an object': exec_body({'path': '/bin/ls'}),
        'empty list': exec_body([]),
        'empty executable': exec_body(['']),
        'non-string item': exec_body(['/bin/ls', 1]),
        'null item': exec_body(['/bin/ls', None]),
        'list item': exec_body(['/bin/ls', ['-l']]),
        'NUL in argument': exec_body(['/bin/ls', 'a\x00']),
        'NUL in executable': exec_body(['/bin/l\x00s']),
        'too many items': exec_body(['/bin/x'] * 1025),
        'item too long': exec_body(['/bin/echo', 'x' * 65537]),
        'env not a list': exec_body(['/bin/ls'], env='A=1'),
        'env an object': exec_body(['/bin/ls'], env={'A': '1'}),
        'env item without =': exec_body(['/bin/ls'], env=['A']),
        'env item without a name': exec_body(['/bin/ls'], env=['=1']),
        'env item not a string': exec_body(['/bin/ls'], env=[['A=1']]),
        'NUL in env name': exec_body(['/bin/ls'], env=['A\x00=1']),
        'NUL in env value': exec_body(['/bin/ls'], env=['A=1\x00']),
        'too many env items': exec_body(['/bin/ls'], env=['A=1'] * 1025),
        'input not a string': exec_body(['/bin/cat'], input=['aGk=']),
        'input not base64': exec_body(['/bin/cat'], input='a b c'),
        'input bad padding': exec_body(['/bin/cat'], input='aGk'),
        'input one byte over': exec_body(['/bin/cat'], input=b64(b'x' * 9)),
        'huge input': exec_body(['/bin/cat'], input='A' * 4_000_000),
        'timeout zero': exec_body(['/bin/ls'], timeout=0),
        'timeout negative': exec_body(['/bin/ls'], timeout=-5),
        'timeout over max_timeout': exec_body(['/bin/ls'], timeout=61),
        'timeout huge': exec_body(['/bin/ls'], timeout=2 ** 63),
        'timeout a string': exec_body(['/bin/ls'], timeout='10'),
        'timeout a float': exec_body(['/bin/ls'], timeout=2.5),
        'timeout a boolean': exec_body(['/bin/ls'], timeout=True),
        'timeout without wait': exec_body(['/bin/ls'], timeout=5,
                                          wait=False),
        'wait a string': exec_body(['/bin/ls'], wait='false'),
        'wait an integer': exec_body(['/bin/ls'], wait=0),
        'unknown key': exec_body(['/bin/ls'], cwd='/'),
        'second action': dict(exec_body(['/bin/ls']), reboot={}),
    }

    def test_invalid_bodies(self):
        for name, body in self.INVALID.items():
            self.assertRaises(
                (nova_exception.ValidationError, webob.exc.HTTPBadRequest),
                self.guest_exec, body)
            self.assertFalse(self.call_compute.called, name)
        self.assertEqual([], self.actions)

    def test_valid_bodies(self):
        for body in (
                exec_body(['/bin/ls']),
                exec_body(['/bin/printf', '', '%s\n', '']),
                exec_body(['ls'], env=[], input=''),
                exec_body(['/bin/cat'], env=['A=', 'B=b=c', 'C D=\t'],
                          input=b64(b'x' * 8), timeout=60, wait=True),
                exec_body(['/bin/ls'], wait=False)):
            self.guest_exec(body)

    def test_status_schema(self):
        for body in ({'guestExecStatus': {}},
                     {'guestExecStatus': {'pid': '1'}},
                     {'guestExecStatus': {'pid': 0}},
                     {'guestExecStatus': {'pid': 2 ** 32}},
                     {'guestExecStatus': {'pid': 1, 'wait': True}},
                     {'guestExecStatus': 5}):
            self.assertRaises(
                nova_exception.ValidationError,
                self.controller.guest_exec_status, self.req,
                self.instance.uuid, body=body)
        self.assertFalse(self.call_compute.called)

    def test_messages_name_the_limit(self):
        for body, words in (
                (exec_body(['/bin/ls'], timeout=61),
                 ['61', '60', 'max_timeout']),
                (exec_body(['/bin/cat'], input=b64(b'x' * 9)),
                 ['9 bytes', '8 bytes', 'max_input_bytes']),
                (exec_body(['/bin/cat'], input='A' * 4_000_000),
                 ['8 bytes', 'max_input_bytes']),
                (exec_body(['/bin/cat'], input='a b c'), ['base64'])):
            error = self.assertRaises(webob.exc.HTTPBadRequest,
                                      self.guest_exec, body)
            for word in words:
                self.assertIn(word, error.explanation)

    def test_secrets_masked_in_validation_errors(self):
        secret = 'SECRET-0a9b'
        for body in (
                exec_body(['/bin/ls'], env=['A=' + secret, 'B']),
                exec_body(['/bin/ls'], env={'A': secret}),
                exec_body(['/bin/ls'], env=['A=' + secret + '\x00']),
                exec_body(['/bin/ls'], env=[{'A': secret}]),
                exec_body(['/bin/ls'], input=[secret])):
            error = self.assertRaises(nova_exception.ValidationError,
                                      self.guest_exec, body)
            # The value nova quotes holds the secret; it is masked.
            self.assertNotIn(secret, error.format_message())
            self.assertIn('***', error.format_message())


class TestController(ControllerTestCase):

    def test_waited_exec(self):
        self.flags(rpc_response_timeout=60)
        body = exec_body(['/bin/cat'], env=['A=1'], input=b64(b'data'),
                         timeout=20)
        self.assertEqual({'guestExec': REST_RESULT}, self.guest_exec(body))
        self.get_instance.assert_called_once_with(
            self.req.environ['nova.context'], self.instance.uuid,
            guest_exec.RULE)
        self.call_compute.assert_called_once_with(
            self.req.environ['nova.context'], self.instance, 'guest_exec',
            rpc_timeout=80, command=['/bin/cat'], env=['A=1'],
            input=b64(b'data'), timeout=20, wait=True)

    def test_integral_floats_sent_as_integers(self):
        self.guest_exec(exec_body(['/bin/ls'], timeout=20.0))
        timeout = self.call_compute.call_args.kwargs['timeout']
        self.assertEqual((20, int), (timeout, type(timeout)))
        self.controller.guest_exec_status(
            self.req, self.instance.uuid,
            body={'guestExecStatus': {'pid': 42.0}})
        pid = self.call_compute.call_args.kwargs['pid']
        self.assertEqual((42, int), (pid, type(pid)))

    def test_defaults(self):
        self.flags(default_timeout=30, max_timeout=10, group='qga_ext')
        self.guest_exec(exec_body(['/bin/ls']))
        kwargs = self.call_compute.call_args.kwargs
        # default_timeout is capped by max_timeout.
        self.assertEqual((None, '', 10, True), (
            kwargs['env'], kwargs['input'], kwargs['timeout'],
            kwargs['wait']))

    def test_no_wait_is_202_with_the_pid(self):
        self.call_compute.return_value = {'pid': 7}
        response = self.guest_exec(exec_body(['/bin/ls'], wait=False))
        self.assertEqual(202, response.code)
        self.assertEqual({'guestExec': {'pid': 7}}, response.obj)
        self.assertIsNone(self.call_compute.call_args.kwargs['rpc_timeout'])

    def test_status(self):
        result = self.controller.guest_exec_status(
            self.req, self.instance.uuid, body={'guestExecStatus': {
                'pid': 42}})
        self.assertEqual({'guestExecStatus': REST_RESULT}, result)
        self.call_compute.assert_called_once_with(
            self.req.environ['nova.context'], self.instance,
            'guest_exec_status', pid=42)
        self.assertEqual([], self.actions)

    def test_status_during_a_task_but_not_when_locked(self):
        self.instance.task_state = 'image_snapshot'
        body = {'guestExecStatus': {'pid': 42}}
        self.controller.guest_exec_status(self.req, self.instance.uuid,
                                          body=body)
        self.assertRaises(webob.exc.HTTPConflict, self.guest_exec,
                          exec_body(['/bin/ls']))
        self.instance.task_state = None
        self.instance.locked = True
        self.assertRaises(webob.exc.HTTPConflict,
                          self.controller.guest_exec_status, self.req,
                          self.instance.uuid, body=body)

    def test_allow_list_refused_before_the_compute_node(self):
        self.flags(allowed_commands=['/usr/bin/uptime'], group='qga_ext')
        error = self.assertRaises(webob.exc.HTTPForbidden, self.guest_exec,
                                  exec_body(['/bin/sh', '-c', 'id']))
        self.assertIn('/bin/sh', error.explanation)
        self.assertFalse(self.call_compute.called)
        self.assertEqual([], self.actions)
        self.guest_exec(exec_body(['/usr/bin/uptime']))
        self.assertTrue(self.call_compute.called)

    def test_instance_action_records_argv_only(self):
        self.guest_exec(exec_body(['/bin/sh', '-c', 'cat'],
                                  env=['TOKEN=' + ENV_SECRET],
                                  input=b64(INPUT_SECRET)))
        (action,) = self.actions
        context = self.req.environ['nova.context']
        self.assertEqual(
            ('guestExec', self.instance.uuid, context.request_id,
             "/bin/sh -c cat"),
            (action.action, action.instance_uuid, action.request_id,
             action.message))
        self.assertNotIn(ENV_SECRET, repr(action))
        self.assertNotIn(b64(INPUT_SECRET), repr(action))

    def test_audit_log_without_secrets(self):
        logs = self.useFixture(fixtures.FakeLogger(level=logging.DEBUG))
        self.guest_exec(exec_body(['/bin/sh', '-c', 'cat'],
                                  env=['TOKEN=' + ENV_SECRET, 'LANG=C'],
                                  input=b64(INPUT_SECRET)))
        context = self.req.environ['nova.context']
        self.assertIn("guestExec by user %s of project %s: argv /bin/sh -c "
                      "cat, environment names ['TOKEN', 'LANG'], 19 bytes "
                      "of input, timeout 30 s, wait True" % (
                          context.user_id, context.project_id),
                      logs.output)
        for secret in (ENV_SECRET, INPUT_SECRET.decode(), b64(INPUT_SECRET)):
            self.assertNotIn(secret, logs.output)


class FakeQemu:
    """libvirt_qemu answering guest-info, guest-exec and its status."""

    def __init__(self, disabled=(), polls=0):
        self.disabled = disabled
        self.polls = polls
        self.requests = []
        self.lock_held = []
        self.lock = None

    def qemuAgentCommand(self, domain, request, timeout, flags):
        if self.lock is not None:
            self.lock_held.append(self.lock.locked())
        request = json.loads(request)
        self.requests.append(request)
        command = request['execute']
        if command == 'guest-info':
            reply = {'version': '7.2', 'supported_commands': [
                {'name': name, 'enabled': name not in self.disabled}
                for name in ('guest-exec', 'guest-exec-status')]}
        elif command == 'guest-exec':
            reply = {'pid': 42}
        elif self.polls:
            self.polls -= 1
            reply = {'exited': False}
        else:
            reply = {'exited': True, 'exitcode': 0,
                     'out-data': b64(b'\x00out\xff' + b'x' * 10),
                     'err-data': b64(b'err')}
        return json.dumps({'return': reply})


class TestEndpoint(GuestExecTestCase):

    def setUp(self):
        super().setUp()
        self.flags(max_output_bytes=5, group='qga_ext')
        self.qemu = FakeQemu()
        self.domain = mock.Mock()
        self.domain.UUIDString.return_value = 'dom-uuid'
        self.driver = mock.Mock(qemu_api=self.qemu)
        self.driver.virtapi._compute.host = 'compute1'
        self.driver.instance_lock.side_effect = lambda instance: (
            lockutils.lock('test-%s' % instance.uuid))
        results, agent_info = agent.ExpiringCache(), agent.ExpiringCache()
        self.driver.guest_agent.side_effect = (
            lambda instance, **options: agent.GuestAgent(
                self.domain, results=results, agent_info=agent_info,
                **options))
        self.events = self.useFixture(fixtures.MockPatch(
            'nova.compute.utils.EventReporter', autospec=True)).mock
        self.endpoint = self.extension.rpc_endpoint(self.driver)
        self.context = mock.sentinel.context
        self.instance = fake_instance.fake_instance_obj(None)

    def guest_exec(self, command=('/bin/cat',), env=None, stdin=b'',
                   timeout=5, wait=True):
        return self.endpoint.guest_exec(self.context, self.instance,
                                        list(command), env, b64(stdin),
                                        timeout, wait)

    def test_waited_exec(self):
        self.qemu.polls = 2
        result = self.guest_exec(env=['A=1'], stdin=b'in')
        self.assertEqual(
            {'pid': 42, 'exited': True, 'exitcode': 0, 'signal': None,
             'stdout': b64(b'\x00out\xff'), 'stderr': b64(b'err'),
             'stdout_truncated': True, 'stderr_truncated': False}, result)
        commands = [r['execute'] for r in self.qemu.requests]
        self.assertEqual(['guest-info', 'guest-exec'] +
                         ['guest-exec-status'] * 3, commands)
        self.assertEqual(
            {'path': '/bin/cat', 'arg': [], 'capture-output': True,
             'env': ['A=1'], 'input-data': b64(b'in')},
            self.qemu.requests[1]['arguments'])
        self.assertEqual(5, self.driver.guest_agent.call_args.kwargs[
            'max_output_bytes'])
        self.events.assert_called_once_with(
            self.context, guest_exec.EVENT, 'compute1', self.instance.uuid)

    def test_no_wait_returns_the_pid(self):
        self.assertEqual({'pid': 42}, self.guest_exec(wait=False))
        self.assertEqual(['guest-info', 'guest-exec'],
                         [r['execute'] for r in self.qemu.requests])

    def test_status(self):
        result = self.endpoint.guest_exec_status(self.context, self.instance,
                                                 42)
        self.assertTrue(result['exited'])
        self.assertEqual([{'execute': 'guest-exec-status',
                           'arguments': {'pid': 42}}], self.qemu.requests)
        self.assertFalse(self.events.called)

    def test_disabled_commands_refused_before_starting(self):
        for disabled in ('guest-exec', 'guest-exec-status'):
            self.qemu.requests = []
            self.qemu.disabled = (disabled,)
            error = self.assertRaises(nova_exception.InstanceAgentNotEnabled,
                                      self.guest_exec)
            self.assertEqual(exception.COMMAND_DISABLED,
                             exception.agent_error_tag(error))
            self.assertIn(disabled, error.format_message())
            self.assertEqual(['guest-info'],
                             [r['execute'] for r in self.qemu.requests])

    def test_agent_errors_become_nova_exceptions(self):
        self.driver.guest_agent.side_effect = None
        fake_agent = self.driver.guest_agent.return_value
        fake_agent.exec_status.side_effect = agent.ExecPidUnknown(pid=9)
        error = self.assertRaises(
            nova_exception.NotFound, self.endpoint.guest_exec_status,
            self.context, self.instance, 9)
        self.assertEqual(exception.PID_UNKNOWN,
                         exception.agent_error_tag(error))
        fake_agent.exec_start.side_effect = agent.AgentNotConnected()
        error = self.assertRaises(nova_exception.InstanceAgentNotEnabled,
                                  self.guest_exec)
        self.assertEqual(exception.NOT_CONNECTED,
                         exception.agent_error_tag(error))
        self.assertNotIn('pid', error.format_message())
        # Once started, the error names the pid: the command may run on.
        fake_agent.exec_start.side_effect = None
        fake_agent.exec_start.return_value = 42
        fake_agent.exec_wait.side_effect = agent.AgentTimeout(
            command='guest-exec-status', timeout=10)
        error = self.assertRaises(nova_exception.InstanceAgentNotEnabled,
                                  self.guest_exec)
        self.assertEqual(exception.TIMEOUT, exception.agent_error_tag(error))
        self.assertIn('guest-exec-status', error.format_message())
        self.assertIn('pid 42', error.format_message())
        self.assertEqual(42, error.kwargs['pid'])
        # The event saw the nova exception, not the agent's.
        exit_args = self.events.return_value.__exit__.call_args.args
        self.assertIs(error, exit_args[1])

    def test_allow_list_on_the_compute_node(self):
        self.flags(allowed_commands=['/bin/true'], group='qga_ext')
        endpoint = self.extension.rpc_endpoint(self.driver)
        self.assertRaises(nova_exception.Forbidden, endpoint.guest_exec,
                          self.context, self.instance, ['/bin/cat'], None,
                          '', 5, True)
        self.assertEqual([], self.qemu.requests)
        self.assertFalse(self.driver.guest_agent.called)
        # Recorded as the event's failure.
        self.assertTrue(self.events.return_value.__exit__.call_args.args[1])

    def test_each_agent_call_holds_the_instance_lock(self):
        held = threading.Lock()
        self.driver.instance_lock.side_effect = lambda instance: held
        self.qemu.lock = held
        self.qemu.polls = 3
        self.guest_exec()
        self.assertEqual([True] * 6, self.qemu.lock_held)
        # Between the calls the lock is free.
        self.assertFalse(held.locked())
        # The lock of this instance only: others' agent work goes on.
        self.assertEqual([mock.call(self.instance)] * 6,
                         self.driver.instance_lock.call_args_list)

    def test_secrets_not_logged_at_debug(self):
        logs = self.useFixture(fixtures.FakeLogger(level=logging.DEBUG))
        self.qemu.polls = 1
        self.guest_exec(env=['TOKEN=' + ENV_SECRET], stdin=INPUT_SECRET)
        self.assertIn('guest-exec', logs.output)
        for secret in (ENV_SECRET, INPUT_SECRET.decode(), b64(INPUT_SECRET)):
            self.assertNotIn(secret, logs.output)
