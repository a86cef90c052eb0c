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

"""Property-based fuzzing of the action bodies through nova's real API.

Each test boots one server and sends it generated bodies through the paste
filter, nova's ``wsgi.Resource``, the controllers, RPC and the compute
driver down to the fake qemu-ga, whose handlers record every argument that
reached the guest. For every body:

* the status is below 500; 504 only when the fake agent was made to time
  out (and 501 for a changePassword the plugin does not claim, which is
  nova's own answer to an agent that does not respond);
* a 400 or 403 never reached the guest;
* whatever reached the guest is valid for qemu-ga, and is what was asked;
* no task is left on the server.

The strategies mix valid values with the known hard cases (separators and
control characters in user names, lone surrogates, oversized values,
numbers of the wrong kind, wrong JSON types at every level, extra keys), so
that both the refusals and the accepted paths run.
"""

import base64
import binascii
import os
import string
import time
import unicodedata

from hypothesis import example
from hypothesis import given
from hypothesis import HealthCheck
from hypothesis import settings
from hypothesis import strategies as st

from nova_qga_ext.extensions import guest_exec
from nova_qga_ext.extensions import quiesced_snapshot
from nova_qga_ext.extensions import user_password
from tests.functional.api import base
from tests.functional.api import fake_qemu_agent

MAX_INPUT_BYTES = 16
MAX_TIMEOUT = 60

# QGA_FUZZ_EXAMPLES: more examples for a deeper, slower search.
FUZZ = settings(
    max_examples=int(os.environ.get('QGA_FUZZ_EXAMPLES', 60)),
    deadline=None, database=None, print_blob=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture,
                           HealthCheck.too_slow,
                           HealthCheck.data_too_large])

# -- strategies ---------------------------------------------------------------

# Every code point, lone surrogates included: JSON can carry them ("\ud800")
# and Python decodes them, but no C string in libvirt or qemu-ga can.
any_text = st.text(st.characters(exclude_categories=()), max_size=40)
HARD_CHARACTERS = (':', '\n', '\r', '\x00', '\t', ' ', '\x7f', '\x85',
                   '\u2028', '\u202e', '\ufeff', '\ud800', '\udfff', '=',
                   'é', '\U0001f600')
hard_character = st.sampled_from(HARD_CHARACTERS)
short_word = st.text(string.ascii_letters + string.digits + '_-.',
                     min_size=0, max_size=8)
with_hard_character = st.builds(lambda a, c, b: a + c + b,
                                short_word, hard_character, short_word)
long_text = st.sampled_from((33, 1025, 10_000, 70_000)).map(
    lambda n: 'u' * n)

scalar_junk = st.one_of(
    st.none(), st.booleans(), st.integers(-2 ** 70, 2 ** 70),
    st.floats(), any_text)
junk = st.recursive(
    scalar_junk,
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(short_word, inner, max_size=3)),
    max_leaves=6)
extra_keys = st.dictionaries(
    st.one_of(short_word, st.sampled_from(('user', 'uid', 'shell', 'pid'))),
    junk, max_size=2)

user_name = st.one_of(
    st.sampled_from(('root', 'alice', 'r' * 32)),
    st.text(string.ascii_lowercase + string.digits + '_-.', min_size=1,
            max_size=32),
    with_hard_character, long_text, any_text, st.just(''), scalar_junk)
password = st.one_of(
    st.text(string.printable.strip(), min_size=1, max_size=30),
    st.just('$6$s4lt$' + 'h' * 86), with_hard_character, long_text,
    any_text, st.just(''), scalar_junk)

program = st.one_of(
    st.sampled_from(('/bin/true', '/bin/echo', '/bin/false', 'ls', '')),
    with_hard_character, any_text)
argument = st.one_of(short_word, with_hard_character, any_text)
command = st.one_of(
    st.lists(argument, min_size=0, max_size=4).flatmap(
        lambda args: program.map(lambda p: [p] + args)),
    st.just([]), st.just(['/bin/x'] * (guest_exec.MAX_ARGS + 1)),
    st.lists(scalar_junk, min_size=1, max_size=3), junk)
valid_env_item = st.builds(
    '{}={}'.format, st.text(string.ascii_uppercase, min_size=1, max_size=5),
    short_word)
env_item = st.one_of(
    valid_env_item, with_hard_character, st.just('=x'), st.just('NOVALUE'),
    scalar_junk)
env = st.one_of(st.lists(env_item, max_size=3), junk)
exec_input = st.one_of(
    st.binary(max_size=MAX_INPUT_BYTES + 4).map(
        lambda data: base64.b64encode(data).decode()),
    st.just(base64.b64encode(b'x' * 100_000).decode()),
    st.just('QUFB' * 30_000), st.sampled_from(('%%%%', 'QUJD=', 'QUJD\n',
                                               'QU JD', '====')),
    any_text, scalar_junk)
timeout = st.one_of(
    st.integers(1, MAX_TIMEOUT), st.integers(-10, 0),
    st.integers(MAX_TIMEOUT + 1, 2 ** 70), st.floats(),
    st.sampled_from((1.0, 5.0, 1.5, 1e300, '5', True)), junk)
pid = st.one_of(
    st.integers(1, guest_exec.MAX_PID), st.integers(-2 ** 40, 0),
    st.integers(guest_exec.MAX_PID + 1, 2 ** 70),
    st.sampled_from((1000.0, 1000.5, '1000', True, 1e300)), st.floats(),
    junk)
image_name = st.one_of(st.text(string.ascii_letters, min_size=1,
                               max_size=10),
                       with_hard_character, long_text, any_text,
                       st.just(''), st.just('   '), scalar_junk)
metadata = st.one_of(
    st.dictionaries(st.one_of(short_word, st.sampled_from(
        ('qga_ext_quiesce', 'qga_ext_freeze_window_ms'))),
        st.one_of(short_word, any_text, long_text, scalar_junk),
        max_size=3),
    junk)


def entity(required, optional):
    """The fields (the required ones mostly there), maybe unknown ones, or
    junk.
    """
    chosen = st.one_of(
        st.fixed_dictionaries(required, optional=optional),
        st.fixed_dictionaries({}, optional={**required, **optional}))
    fields = st.one_of(
        chosen, chosen,
        st.tuples(chosen, extra_keys).map(lambda t: {**t[1], **t[0]}))
    return st.one_of(fields, fields, fields, junk)


def body(action, entities, valid):
    """Mostly ``{action: entity}``, a third of them ``valid`` ones, so that
    the guest is reached often; else an extra action or no object.
    """
    wrapped = entities.map(lambda value: {action: value})
    good = valid.map(lambda value: {action: value})
    return st.one_of(
        good, good, good, wrapped, wrapped, wrapped, wrapped,
        st.tuples(wrapped, short_word, junk).map(
            lambda t: {**t[0], t[1] or 'reboot': t[2]}),
        st.sampled_from(([], [action], action, None, 0)))


valid_input = st.binary(max_size=MAX_INPUT_BYTES).map(
    lambda data: base64.b64encode(data).decode())

change_password_bodies = body(user_password.ACTION, entity(
    {'userName': user_name, 'adminPass': password},
    {'crypted': st.one_of(st.booleans(), scalar_junk)}),
    st.fixed_dictionaries(
        {'userName': st.text(string.ascii_lowercase, min_size=1,
                             max_size=32),
         'adminPass': st.text(string.printable.strip(), min_size=1,
                              max_size=40)},
        optional={'crypted': st.booleans()}))
guest_exec_bodies = body(guest_exec.EXEC_ACTION, entity(
    {'command': command},
    {'env': env, 'input': exec_input, 'timeout': timeout,
     'wait': st.one_of(st.booleans(), scalar_junk)}),
    st.fixed_dictionaries(
        {'command': st.lists(short_word, max_size=3).map(
            lambda args: ['/bin/true'] + args)},
        optional={'env': st.lists(valid_env_item, max_size=3),
                  'input': valid_input,
                  'timeout': st.integers(1, MAX_TIMEOUT)}))
guest_exec_status_bodies = body(guest_exec.STATUS_ACTION, entity(
    {'pid': pid}, {}), st.fixed_dictionaries(
    {'pid': st.integers(1000, 1010)}))
quiesced_snapshot_bodies = body(quiesced_snapshot.ACTION, entity(
    {'name': image_name}, {'metadata': metadata}),
    st.fixed_dictionaries(
        {'name': st.text(string.ascii_letters, min_size=1, max_size=20)},
        optional={'metadata': st.dictionaries(
            st.text(string.ascii_lowercase, min_size=1, max_size=8),
            short_word, max_size=2)}))
# Mostly a healthy agent: the accepted paths need one.
agent_modes = st.sampled_from(('ok',) * 6 + ('hung', 'disconnected'))
api_versions = st.sampled_from(('v2.1', 'v2.1', 'v2'))

# -- what the guest may receive ----------------------------------------------


def _is_control(character):
    return unicodedata.category(character) == 'Cc'


def _c_string(value):
    """A string that survives libvirt's and qemu-ga's C strings."""
    if not isinstance(value, str) or '\x00' in value:
        return False
    try:
        value.encode('utf-8')
    except UnicodeEncodeError:
        return False
    return True


def _examples(action, entities, mode=True):
    """Explicit examples: each entity under ``action`` on v2.1, a healthy
    agent. Non-dict entities stand for whole bodies of the wrong type.
    """
    def decorator(test):
        for value in entities:
            body = {action: value} if isinstance(value, dict) else value
            kwargs = {'body': body, 'version': 'v2.1'}
            if mode:
                kwargs['mode'] = 'ok'
            test = example(**kwargs)(test)
        return test
    return decorator


def _short(value):
    # ascii(): a lone surrogate in a failure message would break the
    # subunit stream itself.
    text = ascii(value)
    return text if len(text) < 500 else text[:500] + '...'


class FuzzTestBase(base.QgaExtAPITestBase):

    def setUp(self):
        super().setUp()
        self.admin = self.api_as('admin')
        self.server = self.create_active_server()
        self.agent = self.fake_agent(self.server)
        #: (command, arguments) of every agent command, as qemu-ga got them.
        self.received = []
        for command in fake_qemu_agent.SUPPORTED_COMMANDS:
            self.agent.handlers[command] = self._recorder(command)
        # Any program exists: the guest then sees every accepted argv.
        self.agent.exec_handler = lambda process: None

    def _recorder(self, command):
        builtin = getattr(self.agent, '_' + command.replace('-', '_'), None)

        def handler(**arguments):
            self.received.append((command, arguments))
            if command == 'guest-set-user-password':
                # Any user exists, so every accepted name reaches chpasswd.
                return {}
            return builtin(**arguments) if builtin else {}
        return handler

    def send(self, body, mode, version):
        """Send a body with the agent in ``mode``; return (response, calls).

        ``calls`` are the agent commands it caused.
        """
        start = len(self.received)
        self.agent.hung = mode == 'hung'
        self.agent.connected = mode != 'disconnected'
        try:
            response = self.action(self.server['id'], body, api=self.admin,
                                   version=version)
        finally:
            self.agent.hung = False
            self.agent.connected = True
        return response, self.received[start:]

    def check_response(self, response, mode, calls, body, novas=False):
        """``novas``: the body is nova's own action, not the plugin's."""
        allowed = {504} if mode == 'hung' else set()
        if novas and mode != 'ok':
            # nova's changePassword: 501 when the agent does not answer.
            allowed.add(501)
        self.assertTrue(response.status < 500 or response.status in allowed,
                        (response.status, response.content[:2000],
                         _short(body)))
        # oslo.middleware's 413 for an oversized body comes before nova.
        if response.status >= 400 and response.status != 413:
            # nova's fault format: {"badRequest": {"code": 400, ...}}
            (fault,) = response.body.values()
            self.assertEqual(response.status, fault['code'])
            self.assertIsInstance(fault['message'], str)
        if response.status in (400, 403):
            self.assertEqual([], calls, (response.status, _short(body)))
        self.assertIsNone(self.instance(self.server).task_state)

    def _entity(self, body, action):
        self.assertIsInstance(body, dict)
        return body[action]


class TestChangePasswordFuzz(FuzzTestBase):

    QGA_EXTENSIONS = ['user_password']

    @FUZZ
    @given(body=change_password_bodies, mode=agent_modes,
           version=api_versions)
    @_examples(user_password.ACTION, [
        {'userName': name, 'adminPass': 'pw'} for name in (
            'root', 'a:b', 'a\nb', 'a\x00b', 'é', '\u2028', '\ud800',
            'u' * 33, 'u' * 10_000, '', ' ', 7, None, ['root'])] + [
        {'userName': 'root', 'adminPass': secret} for secret in (
            'a\nb', 'a\x00b', '\ud800', 'p' * 1025, '', 7)] + [
        {'userName': 'root', 'adminPass': secret, 'crypted': True}
        for secret in ('$6$s:x', '$6$s x', '$6$s\tx', '$6$ok')] + [
        {'adminPass': 'x', 'crypted': True},
        {'userName': 'root', 'adminPass': 'x', 'crypted': 'yes'},
        {'userName': 'root', 'adminPass': 'x', 'uid': 0},
        [], 'root', None])
    def test_change_password(self, body, mode, version):
        response, calls = self.send(body, mode, version)
        claimed = self._claimed(body)
        self.check_response(response, mode, calls, body, novas=not claimed)
        if not claimed:
            # nova's own changePassword, which takes any string.
            return
        for command, arguments in calls:
            self.assertEqual('guest-set-user-password', command)
            self.check_user_password(body, arguments)
        if mode == 'ok' and response.status == 202:
            self.assertEqual(1, len(calls))

    @staticmethod
    def _claimed(body):
        if not isinstance(body, dict) or len(body) != 1:
            return False
        value = body.get(user_password.ACTION)
        return isinstance(value, dict) and (
            'userName' in value or 'crypted' in value)

    def check_user_password(self, body, arguments):
        entity = self._entity(body, user_password.ACTION)
        name = arguments['username']
        self.assertTrue(_c_string(name), _short(name))
        self.assertTrue(1 <= len(name) <= 32, _short(name))
        self.assertFalse(any(c == ':' or _is_control(c) for c in name),
                         _short(name))
        secret = base64.b64decode(arguments['password']).decode('utf-8')
        self.assertTrue(_c_string(secret))
        self.assertTrue(1 <= len(secret) <= 1024)
        self.assertNotIn('\n', secret)
        if arguments['crypted']:
            self.assertFalse(any(c in ': \t' or _is_control(c)
                                 for c in secret))
        self.assertEqual((entity['userName'], entity['adminPass'],
                          entity.get('crypted', False)),
                         (name, secret, arguments['crypted']))


class TestGuestExecFuzz(FuzzTestBase):

    QGA_EXTENSIONS = ['guest_exec']

    def setUp(self):
        super().setUp()
        self.flags(max_timeout=MAX_TIMEOUT, max_input_bytes=MAX_INPUT_BYTES,
                   group='qga_ext')
        # pid 1000, whose status the valid guestExecStatus bodies ask.
        response = self.action(self.server['id'], {'guestExec': {
            'command': ['/bin/true'], 'wait': False}}, api=self.admin)
        self.assertEqual({'guestExec': {'pid': 1000}}, response.body)

    @FUZZ
    @given(body=guest_exec_bodies, mode=agent_modes, version=api_versions)
    @_examples(guest_exec.EXEC_ACTION, [
        {'command': ['/bin/true']},
        {'command': '/bin/true'}, {'command': []}, {'command': None},
        {'command': {'0': '/bin/true'}}, {'command': ['/bin/echo', 1]},
        {'command': ['']}, {'command': ['/bin/echo', 'a\x00b']},
        {'command': ['/bin/echo', '\ud800']}, {'command': ['\udfff']},
        {'command': ['/bin/true'], 'env': ['A=\ud800']},
        {'command': ['/bin/true'], 'env': ['A']},
        {'command': ['/bin/cat'], 'input': base64.b64encode(
            b'x' * (MAX_INPUT_BYTES + 1)).decode()},
        {'command': ['/bin/cat'], 'input': 'QUFB' * 30_000},
        {'command': ['/bin/cat'], 'input': '%%%%'},
        {'command': ['/bin/cat'], 'input': 'QUJD\n'},
    ] + [{'command': ['/bin/true'], 'timeout': value} for value in (
        -1, 0, 1, 1.0, 1.5, '5', True, None, MAX_TIMEOUT + 1, 2 ** 64,
        1e300, float('inf'), float('nan'))] + [
        {'command': ['/bin/true'], 'wait': False, 'timeout': 1},
        {'command': ['/bin/true'], 'user': 'root'},
        [], '/bin/true', None])
    def test_guest_exec(self, body, mode, version):
        response, calls = self.send(body, mode, version)
        self.check_response(response, mode, calls, body)
        for command, arguments in calls:
            self.assertIn(command, ('guest-info', 'guest-exec',
                                    'guest-exec-status'))
            if command == 'guest-exec':
                self.check_exec(body, arguments)
            elif command == 'guest-exec-status':
                self.check_pid(arguments['pid'])
        if mode == 'ok' and response.status in (200, 202):
            self.assertIn('guest-exec', [c for c, _ in calls])
            self.assertIsInstance(response.body['guestExec']['pid'], int)

    @FUZZ
    @given(body=guest_exec_status_bodies, mode=agent_modes,
           version=api_versions)
    @_examples(guest_exec.STATUS_ACTION, [
        {'pid': value} for value in (
            1000, 1000.0, 1000.5, '1000', True, None, 0, -1, 2 ** 32,
            2 ** 64, 1e300, float('nan'), [1000])] + [
        {'pid': 1000, 'wait': True}, {}, [], 'pid', None])
    def test_guest_exec_status(self, body, mode, version):
        response, calls = self.send(body, mode, version)
        self.check_response(response, mode, calls, body)
        for command, arguments in calls:
            self.assertEqual('guest-exec-status', command)
            self.check_pid(arguments['pid'])
            self.assertEqual(
                self._entity(body, guest_exec.STATUS_ACTION)['pid'],
                arguments['pid'])

    def check_pid(self, value):
        # qemu-ga's pid is a QAPI int: a JSON float is refused.
        self.assertIs(int, type(value), value)
        self.assertTrue(1 <= value <= guest_exec.MAX_PID, value)

    def check_exec(self, body, arguments):
        entity = self._entity(body, guest_exec.EXEC_ACTION)
        path, args = arguments['path'], arguments.get('arg', [])
        self.assertTrue(_c_string(path) and path, _short(path))
        self.assertIsInstance(args, list)
        self.assertTrue(all(_c_string(a) for a in args), _short(args))
        self.assertEqual(entity['command'], [path] + args)
        environment = arguments.get('env', [])
        self.assertIsInstance(environment, list)
        for entry in environment:
            self.assertTrue(_c_string(entry), _short(entry))
            self.assertTrue(entry.partition('=')[0] and '=' in entry,
                            _short(entry))
        self.assertEqual(entity.get('env') or [], environment)
        data = arguments.get('input-data', '')
        try:
            stdin = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            self.fail('input-data is not base64: %r' % data[:100])
        self.assertLessEqual(len(stdin), MAX_INPUT_BYTES)
        self.assertEqual(
            base64.b64decode(entity.get('input', '')), stdin)
        self.assertTrue(arguments.get('capture-output'))


class TestQuiescedSnapshotFuzz(FuzzTestBase):

    QGA_EXTENSIONS = ['quiesced_snapshot']

    @settings(FUZZ, max_examples=max(1, FUZZ.max_examples * 2 // 3))
    @given(body=quiesced_snapshot_bodies, version=api_versions)
    @_examples(quiesced_snapshot.ACTION, [
        {'name': 'snap'}, {'name': ''}, {'name': ' '}, {'name': 'a\x00b'},
        {'name': '\ud800'}, {'name': 'n' * 10_000}, {'name': None},
        {'name': 'snap', 'metadata': {'qga_ext_quiesce': 'no'}},
        {'name': 'snap', 'metadata': {'k': 'v' * 300}},
        {'name': 'snap', 'metadata': {'k': 1}},
        {'name': 'snap', 'metadata': ['k']},
        {'name': 'snap', 'extra': 1}, [], 'snap', None], mode=False)
    def test_quiesced_snapshot(self, body, version):
        response, calls = self.send(body, 'ok', version)
        if response.status == 202:
            # The snapshot runs on; the next body needs the server idle.
            self._wait_for_no_task()
        self.check_response(response, 'ok', calls, body)
        for command, _arguments in calls:
            self.assertIn(command, quiesced_snapshot.FSFREEZE_COMMANDS +
                          ('guest-info', 'guest-ping',
                           'guest-fsfreeze-freeze-list'))
        self.assertFalse(self.agent.frozen)

    def _wait_for_no_task(self, timeout=20):
        deadline = time.monotonic() + timeout
        while self.instance(self.server).task_state is not None:
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.05)
