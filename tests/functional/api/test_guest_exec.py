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

"""guestExec and guestExecStatus through nova's real API, in-process."""

import base64
import types

from nova_qga_ext.extensions import guest_exec
from tests.functional.api import base

INPUT_SECRET = b'STDIN-SECRET-5b7e1d'
ENV_SECRET = 'ENV-SECRET-9a2f4c'


def b64(data):
    return base64.b64encode(data).decode()


def exec_body(command, **kwargs):
    return {'guestExec': dict(command=command, **kwargs)}


def status_body(pid):
    return {'guestExecStatus': {'pid': pid}}


class GuestExecTestBase(base.QgaExtAPITestBase):

    QGA_EXTENSIONS = ['guest_exec']

    def setUp(self):
        super().setUp()
        self.admin = self.api_as('admin')

    def run_exec(self, server, command, api=None, **kwargs):
        return self.action(server['id'], exec_body(command, **kwargs),
                           api=api or self.admin)

    def status(self, server, pid, api=None):
        return self.action(server['id'], status_body(pid),
                           api=api or self.admin)

    def assertConflictNaming(self, response, *words):
        self.assertEqual(409, response.status, response.body)
        message = response.body['conflictingRequest']['message']
        for word in words:
            self.assertIn(word, message)


class TestGuestExec(GuestExecTestBase):

    def setUp(self):
        super().setUp()
        self.server = self.create_active_server()
        self.agent = self.fake_agent(self.server)

    def test_waited_exec_returns_the_result(self):
        response = self.run_exec(self.server, ['/bin/echo', 'hello', 'world'])
        self.assertEqual(200, response.status, response.body)
        self.assertEqual(
            {'guestExec': {
                'pid': 1000, 'exited': True, 'exitcode': 0, 'signal': None,
                'stdout': b64(b'hello world\n'), 'stderr': '',
                'stdout_truncated': False, 'stderr_truncated': False}},
            response.body)
        self.assertEqual(['guest-info', 'guest-exec', 'guest-exec-status'],
                         self.agent.commands)

    def test_both_pipelines(self):
        for version in ('v2.1', 'v2'):
            response = self.action(self.server['id'],
                                   exec_body(['/bin/true']), api=self.admin,
                                   version=version)
            self.assertEqual(200, response.status, (version, response.body))
            self.assertTrue(response.body['guestExec']['exited'])

    def test_input_env_exit_code_and_signal(self):
        def handler(process):
            process.stdout = process.stdin.upper()
            process.stderr = '\n'.join(process.env).encode()
            process.exitcode = 3
        self.agent.exec_handler = handler
        response = self.run_exec(self.server, ['/usr/bin/tr', 'a-z', 'A-Z'],
                                 input=b64(b'abc\x00\xff'), env=['A=1', 'B='])
        self.assertEqual(200, response.status, response.body)
        result = response.body['guestExec']
        self.assertEqual(b'ABC\x00\xff', base64.b64decode(result['stdout']))
        self.assertEqual(b'A=1\nB=', base64.b64decode(result['stderr']))
        self.assertEqual((3, None), (result['exitcode'], result['signal']))

        def killed(process):
            process.signal = 9
        self.agent.exec_handler = killed
        result = self.run_exec(self.server, ['/bin/sleep', '100']).body[
            'guestExec']
        self.assertEqual((True, None, 9), (result['exited'],
                                           result['exitcode'],
                                           result['signal']))

    def test_truncation_flags_and_output_cap(self):
        self.flags(max_output_bytes=4, group='qga_ext')
        self.start_qga_compute('compute2')
        server = self.create_active_server(host='compute2')

        def handler(process):
            process.stdout = b'0123456789'
            process.stderr = b'ab'
            process.stderr_truncated = True
        self.fake_agent(server).exec_handler = handler
        result = self.run_exec(server, ['/bin/x']).body['guestExec']
        self.assertEqual((b'0123', True), (base64.b64decode(result['stdout']),
                                           result['stdout_truncated']))
        self.assertEqual((b'ab', True), (base64.b64decode(result['stderr']),
                                         result['stderr_truncated']))

    def test_no_wait_then_status(self):
        def handler(process):
            process.hang = True
        self.agent.exec_handler = handler
        response = self.run_exec(self.server, ['/opt/job'], wait=False)
        self.assertEqual(202, response.status, response.body)
        self.assertEqual({'guestExec': {'pid': 1000}}, response.body)
        self.assertEqual(['guest-info', 'guest-exec'], self.agent.commands)

        response = self.status(self.server, 1000)
        self.assertEqual(200, response.status, response.body)
        self.assertEqual({'pid': 1000, 'exited': False, 'exitcode': None,
                          'signal': None, 'stdout': '', 'stderr': '',
                          'stdout_truncated': False,
                          'stderr_truncated': False},
                         response.body['guestExecStatus'])

        self.agent.process(1000).finish(exitcode=0, stdout=b'done')
        for _attempt in range(2):
            # Retried: qemu-ga reported the result once; the compute node
            # kept it.
            response = self.status(self.server, 1000)
            self.assertEqual(200, response.status, response.body)
            result = response.body['guestExecStatus']
            self.assertEqual((True, 0, b'done'), (
                result['exited'], result['exitcode'],
                base64.b64decode(result['stdout'])))
        self.assertEqual(2, self.agent.commands.count('guest-exec-status'))

    def test_still_running_at_the_deadline(self):
        def handler(process):
            process.hang = True
        self.agent.exec_handler = handler
        response = self.run_exec(self.server, ['/bin/sleep', '600'],
                                 timeout=1)
        self.assertEqual(200, response.status, response.body)
        result = response.body['guestExec']
        self.assertEqual((1000, False, None), (
            result['pid'], result['exited'], result['exitcode']))
        self.agent.process(1000).finish(exitcode=0)
        self.assertTrue(self.status(self.server, 1000).body[
            'guestExecStatus']['exited'])

    def test_unknown_pid(self):
        response = self.status(self.server, 4242)
        self.assertEqual(404, response.status, response.body)
        self.assertIn('4242', response.body['itemNotFound']['message'])

    def test_instance_action_with_argv_and_event(self):
        response = self.run_exec(
            self.server, ['/bin/sh', '-c', 'exit 2'],
            env=['TOKEN=' + ENV_SECRET], input=b64(INPUT_SECRET))
        self.assertEqual(200, response.status, response.body)
        self.assertEqual(2, response.body['guestExec']['exitcode'])
        self.assertEqual([(guest_exec.EVENT, 'Success')],
                         self.server_events(self.server, 'guestExec'))
        actions = self.admin.api_get(
            'servers/%s/os-instance-actions' % self.server['id']).body[
            'instanceActions']
        (action,) = [a for a in actions if a['action'] == 'guestExec']
        self.assertEqual("/bin/sh -c 'exit 2'", action['message'])
        detail = self.admin.api_get('servers/%s/os-instance-actions/%s' % (
            self.server['id'], action['request_id'])).body['instanceAction']
        text = repr(actions) + repr(detail)
        self.assertNotIn(ENV_SECRET, text)
        self.assertNotIn(INPUT_SECRET.decode(), text)
        self.assertNotIn(b64(INPUT_SECRET), text)

    def test_failed_exec_recorded_as_error_event(self):
        self.agent.connected = False
        self.run_exec(self.server, ['/bin/true'])
        self.assertEqual([(guest_exec.EVENT, 'Error')],
                         self.server_events(self.server, 'guestExec'))

    def test_secrets_never_logged(self):
        logs = self.capture_debug_logs()
        for wait in (True, False):
            response = self.run_exec(
                self.server, ['/bin/true'], env=['TOKEN=' + ENV_SECRET],
                input=b64(INPUT_SECRET), wait=wait)
            self.assertIn(response.status, (200, 202), response.body)
        # A failing exec too: errors are logged with more detail.
        self.agent.hung = True
        response = self.run_exec(
            self.server, ['/bin/true'], env=['TOKEN=' + ENV_SECRET],
            input=b64(INPUT_SECRET))
        self.assertEqual(504, response.status, response.body)
        # The audit line: argv and environment names, no values.
        self.assertIn("argv /bin/true, environment names ['TOKEN']",
                      logs.output)
        for secret in (ENV_SECRET, INPUT_SECRET.decode(), b64(INPUT_SECRET)):
            self.assertNotIn(secret, logs.output)
        # The agent did get them.
        self.assertEqual(['TOKEN=' + ENV_SECRET],
                         self.agent.process(1000).env)
        self.assertEqual(INPUT_SECRET, self.agent.process(1000).stdin)


class TestValidation(GuestExecTestBase):

    def setUp(self):
        super().setUp()
        self.server = self.create_active_server()
        self.flags(max_timeout=60, max_input_bytes=8, group='qga_ext')

    CASES = {
        'no body': {'guestExec': None},
        'no command': {'guestExec': {}},
        'command not a list': exec_body('/bin/ls'),
        'empty command': exec_body([]),
        'empty executable': exec_body(['']),
        'non-string argument': exec_body(['/bin/ls', 1]),
        'nested argument': exec_body(['/bin/ls', ['-l']]),
        'NUL in argument': exec_body(['/bin/ls', 'a\x00b']),
        'too many arguments': exec_body(['/bin/x'] * (guest_exec.MAX_ARGS +
                                                      1)),
        'env not a list': exec_body(['/bin/ls'], env={'A': '1'}),
        'env item without =': exec_body(['/bin/ls'], env=['A']),
        'env item without name': exec_body(['/bin/ls'], env=['=1']),
        'env item not a string': exec_body(['/bin/ls'], env=[1]),
        'NUL in env': exec_body(['/bin/ls'], env=['A=\x00']),
        'input not a string': exec_body(['/bin/cat'], input=5),
        'input not base64': exec_body(['/bin/cat'], input='%%%%'),
        'input over max_input_bytes': exec_body(['/bin/cat'],
                                                input=b64(b'x' * 9)),
        'huge input': exec_body(['/bin/cat'], input='QUFB' * 20000),
        'zero timeout': exec_body(['/bin/ls'], timeout=0),
        'negative timeout': exec_body(['/bin/ls'], timeout=-1),
        'timeout over max_timeout': exec_body(['/bin/ls'], timeout=61),
        'huge timeout': exec_body(['/bin/ls'], timeout=10 ** 12),
        'string timeout': exec_body(['/bin/ls'], timeout='5'),
        'float timeout': exec_body(['/bin/ls'], timeout=1.5),
        'timeout without waiting': exec_body(['/bin/ls'], timeout=5,
                                             wait=False),
        'wait not a boolean': exec_body(['/bin/ls'], wait='yes'),
        'unknown key': exec_body(['/bin/ls'], user='root'),
        'extra action': dict(exec_body(['/bin/ls']), reboot={}),
        'status without pid': {'guestExecStatus': {}},
        'status pid not an integer': status_body('12'),
        'status pid zero': status_body(0),
        'status pid too large': status_body(2 ** 32),
        'status unknown key': {'guestExecStatus': {'pid': 1, 'x': 1}},
    }

    def test_bad_bodies_rejected_with_400(self):
        for name, body in self.CASES.items():
            response = self.action(self.server['id'], body, api=self.admin)
            self.assertEqual(400, response.status, (name, response.body))
            self.assertIn('message', response.body['badRequest'], name)
        self.assertEqual([], self.fake_agent(self.server).commands)

    def test_limits_named_in_messages(self):
        for body, words in (
                (exec_body(['/bin/ls'], timeout=61), ('61', '60',
                                                      'max_timeout')),
                (exec_body(['/bin/cat'], input=b64(b'x' * 9)),
                 ('9', '8', 'max_input_bytes')),
                (exec_body(['/bin/cat'], input='%%%%'), ('base64',)),
                (exec_body(['/bin/ls'], timeout=5, wait=False),
                 ('timeout', 'wait'))):
            message = self.action(self.server['id'], body, api=self.admin
                                  ).body['badRequest']['message']
            for word in words:
                self.assertIn(word, message)

    def test_at_the_limits(self):
        response = self.run_exec(self.server, ['/bin/cat'], timeout=60,
                                 input=b64(b'x' * 8))
        self.assertEqual(200, response.status, response.body)
        self.assertEqual(b'x' * 8, base64.b64decode(
            response.body['guestExec']['stdout']))

    def test_secrets_masked_in_400(self):
        secret = 'SECRET-VALUE-1e4d'
        for body in (
                exec_body(['/bin/ls'], env=['A=' + secret, '=' + secret]),
                exec_body(['/bin/ls'], env={'A': secret}),
                exec_body(['/bin/ls'], env=['A=' + secret], bogus=1),
                exec_body(['/bin/ls'], input=secret + '\x00'),
                exec_body(['/bin/ls'], input=b64(secret.encode()) * 9),
                exec_body(['/bin/ls'], env=['A=' + secret], timeout='x')):
            response = self.action(self.server['id'], body, api=self.admin)
            self.assertEqual(400, response.status, response.body)
            self.assertNotIn(secret, response.content.decode())
            self.assertNotIn(b64(secret.encode()), response.content.decode())


class TestRefusals(GuestExecTestBase):

    def setUp(self):
        super().setUp()
        self.server = self.create_active_server()
        self.agent = self.fake_agent(self.server)

    def test_policy(self):
        for role in ('member', 'reader'):
            for body in (exec_body(['/bin/true']), status_body(1000)):
                response = self.action(self.server['id'], body,
                                       api=self.api_as(role))
                self.assertEqual(403, response.status, (role, body))
                self.assertIn(guest_exec.RULE,
                              response.body['forbidden']['message'])
        other = self.api_as('member', project_id=self.other_project_id)
        self.assertEqual(404, self.run_exec(self.server, ['/bin/true'],
                                            api=other).status)
        self.assertEqual([], self.agent.commands)
        self.assertEqual([], self.server_events(self.server, 'guestExec'))

    def test_policy_override(self):
        self.policy.set_rules({guest_exec.RULE: 'role:member'},
                              overwrite=False)
        response = self.run_exec(self.server, ['/bin/true'],
                                 api=self.api_as('member'))
        self.assertEqual(200, response.status, response.body)

    def test_allowed_commands_on_the_api(self):
        self.flags(allowed_commands=['/bin/true'], group='qga_ext')
        response = self.run_exec(self.server, ['/bin/echo', 'x'])
        self.assertEqual(403, response.status, response.body)
        self.assertIn('/bin/echo', response.body['forbidden']['message'])
        self.assertIn('allowed_commands',
                      response.body['forbidden']['message'])
        self.assertEqual([], self.agent.commands)
        self.assertEqual(200, self.run_exec(self.server,
                                            ['/bin/true']).status)

    def test_allowed_commands_on_the_compute_node(self):
        # API and compute share one CONF in-process: give the compute
        # node's endpoint a configuration of its own.
        (endpoint,) = [
            e for e in self.computes['compute1'].manager.additional_endpoints
            if isinstance(e, guest_exec.GuestExecEndpoint)]
        endpoint._conf = types.SimpleNamespace(
            allowed_commands=['/bin/true'], max_output_bytes=1024)
        response = self.run_exec(self.server, ['/bin/echo', 'x'])
        self.assertEqual(403, response.status, response.body)
        self.assertIn('/bin/echo', response.body['forbidden']['message'])
        self.assertEqual([], self.agent.commands)
        self.assertEqual([(guest_exec.EVENT, 'Error')],
                         self.server_events(self.server, 'guestExec'))
        self.assertEqual(200, self.run_exec(self.server,
                                            ['/bin/true']).status)

    def test_unknown_server(self):
        response = self.action('9c0b7a7c-3f8e-4a53-9c44-2e3d3f1d6a10',
                               exec_body(['/bin/true']), api=self.admin)
        self.assertEqual(404, response.status)

    def test_locked(self):
        self.admin.post_server_action(self.server['id'], {'lock': {}})
        for body in (exec_body(['/bin/true']), status_body(1000)):
            response = self.action(self.server['id'], body, api=self.admin)
            self.assertConflictNaming(response, 'locked')
        self.assertEqual([], self.agent.commands)

    def test_not_active(self):
        self.admin.post_server_action(self.server['id'], {'os-stop': None})
        self._wait_for_state_change(self.server, 'SHUTOFF')
        self.assertConflictNaming(self.run_exec(self.server, ['/bin/true']),
                                  'stopped', 'ACTIVE')

    def test_task_in_progress(self):
        instance = self.instance(self.server)
        instance.task_state = 'rebooting'
        instance.save()
        self.assertConflictNaming(self.run_exec(self.server, ['/bin/true']),
                                  'rebooting')
        # A status is only read: allowed during a task.
        self.assertEqual(404, self.status(self.server, 1).status)

    def test_agent_not_configured(self):
        server = self.create_active_server(agent=False)
        self.assertConflictNaming(self.run_exec(server, ['/bin/true']),
                                  'hw_qemu_guest_agent')

    def test_agent_not_connected(self):
        self.agent.connected = False
        self.assertConflictNaming(self.run_exec(self.server, ['/bin/true']),
                                  'not connected')
        self.assertConflictNaming(self.status(self.server, 1000),
                                  'not connected')

    def test_command_disabled_in_the_guest(self):
        for command in guest_exec.AGENT_COMMANDS:
            self.agent.disabled = {command}
            self.assertConflictNaming(
                self.run_exec(self.server, ['/bin/true']), command,
                'disabled')
        self.assertNotIn('guest-exec', self.agent.commands)

    def test_program_missing_in_the_guest(self):
        self.assertConflictNaming(self.run_exec(self.server, ['/nope']),
                                  '/nope', 'No such file')

    def test_agent_timeout(self):
        self.agent.hung = True
        response = self.run_exec(self.server, ['/bin/true'])
        self.assertEqual(504, response.status, response.body)
        self.assertIn('guest-info', response.body['computeFault']['message'])

    def test_agent_timeout_after_the_start_names_the_pid(self):
        def handler(process):
            # qemu-ga stops answering right after starting the command.
            self.agent.hung = True
        self.agent.exec_handler = handler
        response = self.run_exec(self.server, ['/bin/true'])
        self.assertEqual(504, response.status, response.body)
        self.assertIn('pid 1000', response.body['computeFault']['message'])
        self.agent.hung = False
        self.assertTrue(self.status(self.server, 1000).body[
            'guestExecStatus']['exited'])

    def test_host_without_plugin(self):
        self.start_qga_compute('compute2', plugin=False)
        server = self.create_active_server(host='compute2')
        self.assertConflictNaming(self.run_exec(server, ['/bin/true']),
                                  'compute2', 'guest_exec')
        self.assertConflictNaming(self.status(server, 1), 'compute2')


class TestRouting(GuestExecTestBase):

    def test_each_server_on_its_host(self):
        self.start_qga_compute('compute2')
        for host in ('compute1', 'compute2'):
            server = self.create_active_server(host=host)
            response = self.run_exec(server, ['/bin/echo', host])
            self.assertEqual(200, response.status, response.body)
            self.assertEqual(host + '\n', base64.b64decode(
                response.body['guestExec']['stdout']).decode())
            self.assertIn(('guest-exec'), self.fake_agent(server).commands)


class TestRPCTimeout(GuestExecTestBase):

    def test_rpc_timeout_sized_from_the_exec_timeout(self):
        server = self.create_active_server()
        seen = []
        call = guest_exec.rpc.ComputeAPI.call

        def spy(self, context, instance, method, extension_name,
                rpc_timeout=None, **kwargs):
            seen.append((method, rpc_timeout, kwargs.get('timeout')))
            return call(self, context, instance, method, extension_name,
                        rpc_timeout=rpc_timeout, **kwargs)
        self.stub_out('nova_qga_ext.rpc.ComputeAPI.call', spy)
        self.flags(rpc_response_timeout=45)
        self.flags(default_timeout=7, group='qga_ext')
        self.run_exec(server, ['/bin/true'], timeout=20)
        self.run_exec(server, ['/bin/true'])
        self.run_exec(server, ['/bin/true'], wait=False)
        self.status(server, 1000)
        self.assertEqual([('guest_exec', 65, 20), ('guest_exec', 52, 7),
                          ('guest_exec', None, 7),
                          ('guest_exec_status', None, None)], seen)
