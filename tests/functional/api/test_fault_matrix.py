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

"""The fault-matrix cells the real lab cannot host, on nova's harness.

A compute node that answers too late for oslo.messaging (a real RPC
timeout, not a mocked one), and 50 concurrent changePassword and guestExec
calls on one server. A compute node without the plugin is covered per
feature in test_framework, test_user_password, test_guest_exec and
test_quiesced_snapshot; the faults inside the guest are in
tests/functional/test_fault_matrix.py, on the real lab.
"""

import base64
import collections
import sys
import threading
import time

from tests.functional.api import base

RPC_TIMEOUT = 1
AGENT_TIMEOUT = 1
# How long the slow compute node's agent takes; past the RPC timeout.
SLOW_AGENT = 4


def change_password(password, user_name='alice'):
    return {'changePassword': {'adminPass': password, 'userName': user_name}}


def guest_exec(*argv, wait=True):
    return {'guestExec': {'command': list(argv), 'wait': wait}}


class FaultMatrixAPITestBase(base.QgaExtAPITestBase):

    QGA_EXTENSIONS = ['user_password', 'guest_exec']

    def setUp(self):
        super().setUp()
        self.admin = self.api_as('admin')
        self.server = self.create_active_server()
        self.agent = self.fake_agent(self.server)
        self.agent.users.add('alice')

    def wait_for(self, predicate, timeout=10):
        deadline = time.monotonic() + timeout
        while not predicate():
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.05)


class TestRPCTimeout(FaultMatrixAPITestBase):
    """The compute node answers after the API stopped waiting."""

    def setUp(self):
        super().setUp()
        self.flags(rpc_response_timeout=RPC_TIMEOUT)
        # changePassword waits for the agent timeout on top of nova's RPC
        # timeout: both together must still be shorter than the slow guest.
        self.flags(agent_timeout=AGENT_TIMEOUT, group='qga_ext')
        self.slow = []
        original = self.agent.run

        def slow_run(domain, command, arguments=None):
            if command in ('guest-set-user-password', 'guest-exec'):
                self.slow.append(command)
                time.sleep(SLOW_AGENT)
            return original(domain, command, arguments)
        self.agent.run = slow_run

    def assertGatewayTimeout(self, response, started, rpc_timeout):
        elapsed = time.monotonic() - started
        self.assertEqual(504, response.status, response.body)
        message = next(iter(response.body.values()))['message']
        self.assertIn('compute1', message)
        self.assertIn('within %d seconds' % rpc_timeout, message)
        # Bounded by the RPC timeout, not by the slow guest.
        self.assertLess(elapsed, SLOW_AGENT)

    def test_change_password(self):
        started = time.monotonic()
        response = self.action(self.server['id'],
                               change_password('Late-pw-1'))
        self.assertGatewayTimeout(response, started,
                                  AGENT_TIMEOUT + RPC_TIMEOUT)
        self.assertIsNone(self.server_task_state(self.server))

        # The compute node finishes on its own: the password takes effect
        # late, as the 504 warns. (nova's manager then finds the task state
        # the API restored and records its event as an error.)
        self.wait_for(lambda: 'alice' in self.agent.passwords)
        self.assertEqual(('Late-pw-1', False), self.agent.passwords['alice'])
        self.wait_for(lambda: self.server_events(
            self.server, 'changePassword')[-1:] == [
                ('compute_set_admin_password', 'Error')])
        self.assertIsNone(self.server_task_state(self.server))
        self.assertEqual('ACTIVE',
                         self.admin.get_server(self.server['id'])['status'])
        # And the server takes the next request.
        del self.agent.run
        self.assertEqual(202, self.action(
            self.server['id'], change_password('Next-pw-2')).status)
        self.assertEqual(('Next-pw-2', False), self.agent.passwords['alice'])

    def test_guest_exec(self):
        started = time.monotonic()
        response = self.action(self.server['id'],
                               guest_exec('/bin/echo', 'late', wait=False),
                               api=self.admin)
        self.assertGatewayTimeout(response, started, RPC_TIMEOUT)
        self.assertIsNone(self.server_task_state(self.server))
        # Started in the guest all the same.
        self.wait_for(lambda: self.agent.processes)
        self.assertEqual(['/bin/echo', 'late'],
                         self.agent.process().argv)


class TestConcurrentCalls(FaultMatrixAPITestBase):
    """50 changePassword and guestExec calls at once on one server."""

    CALLS = 50

    def test_serialised_without_lost_updates(self):
        active = [0]
        most = [0]
        applied = []
        counter = threading.Lock()
        original = self.agent.run

        def counting_run(domain, command, arguments=None):
            # Counted before the fake agent's own lock: two plugin calls
            # here at once would mean the instance lock let them through.
            with counter:
                active[0] += 1
                most[0] = max(most[0], active[0])
            try:
                time.sleep(0.005)
                result = original(domain, command, arguments)
                if command == 'guest-set-user-password':
                    applied.append(base64.b64decode(
                        arguments['password']).decode())
                return result
            finally:
                with counter:
                    active[0] -= 1
        self.agent.run = counting_run

        responses = {}

        def call(index):
            if index % 2:
                body = change_password('Concurrent-pw-%02d' % index)
            else:
                body = guest_exec('/bin/echo', 'call-%02d' % index)
            responses[index] = self.action(self.server['id'], body,
                                           api=self.admin)

        threads = [threading.Thread(target=call, args=(index,))
                   for index in range(self.CALLS)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        elapsed = time.monotonic() - started
        self.assertEqual(self.CALLS, len(responses))

        statuses = collections.Counter(
            (index % 2, response.status)
            for index, response in responses.items())
        print('fault matrix: %d concurrent calls in %.1f s: %s; at most %d '
              'agent command(s) at once' % (
                  self.CALLS, elapsed, dict(statuses), most[0]),
              file=sys.stderr)
        # Never a 500: accepted, or refused while a password change runs.
        self.assertLessEqual(
            {status for _, status in statuses}, {200, 202, 409})
        for index, response in responses.items():
            if response.status == 409:
                self.assertIn(
                    'updating_password',
                    response.body['conflictingRequest']['message'])
            elif index % 2 == 0:
                self.assertEqual(
                    'call-%02d\n' % index,
                    base64.b64decode(
                        response.body['guestExec']['stdout']).decode())
        self.assertEqual(1, most[0])

        # No lost update: each accepted password reached the guest once,
        # and the last one applied is the one the guest has.
        accepted = sorted('Concurrent-pw-%02d' % index
                          for index, response in responses.items()
                          if index % 2 and response.status == 202)
        self.assertTrue(accepted)
        self.assertEqual(accepted, sorted(applied))
        self.assertEqual((applied[-1], False), self.agent.passwords['alice'])
        # One instance action per accepted change, each ended by the
        # compute node; the server is left idle and ACTIVE.
        actions = self.admin.api_get(
            'servers/%s/os-instance-actions' % self.server['id']).body[
            'instanceActions']
        self.assertEqual(len(accepted), sum(
            1 for action in actions if action['action'] == 'changePassword'))
        self.assertIsNone(self.server_task_state(self.server))
        self.assertEqual('ACTIVE',
                         self.admin.get_server(self.server['id'])['status'])
