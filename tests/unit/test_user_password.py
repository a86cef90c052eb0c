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
import logging
import threading
from unittest import mock

from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives import serialization
import fixtures
from nova import exception as nova_exception
from nova import objects
from nova import test
from nova.tests import fixtures as nova_fixtures
from nova.virt import fake
from oslo_config import cfg

from nova_qga_ext import agent
from nova_qga_ext import conf as qga_conf
from nova_qga_ext import exception
from nova_qga_ext.extensions import manager
from nova_qga_ext.extensions import user_password as up
from nova_qga_ext import rpc
from nova_qga_ext.virt import driver

PASSWORD = 'S3cret-pa55word!'
HASH = '$6$saltsalt$' + 'x' * 86
_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
SSH_RSA_KEY = _RSA_KEY.public_key().public_bytes(
    serialization.Encoding.OpenSSH,
    serialization.PublicFormat.OpenSSH).decode()


class ValidationTest(test.NoDBTestCase):

    def test_user_names_accepted(self):
        for name in ('alice', 'root', 'Administrator', 'a', 'a' * 32,
                     'first.last', 'svc-backup_1', 'jörg', 'пользователь',
                     'DOMAIN\\user', 'name with space'):
            up.check_user_name(name)

    def test_user_names_refused(self):
        for name, reason in (
                ('', 'empty'), (None, 'empty'),
                ('a' * 33, 'longer than 32'),
                ('alice:x', '":"'), (':', '":"'),
                ('alice\n', 'control'), ('ali\nce', 'control'),
                ('alice\r', 'control'), ('a\0b', 'control'),
                ('a\tb', 'control'), ('a\x1b[0m', 'control'),
                ('a\x7f', 'control'), ('a\x85', 'control')):
            error = self.assertRaises(up.InvalidUserName,
                                      up.check_user_name, name)
            self.assertIn(reason, error.format_message(), repr(name))
            self.assertEqual(400, error.code)

    def test_refused_user_name_is_quoted_escaped(self):
        error = self.assertRaises(up.InvalidUserName, up.check_user_name,
                                  'alice\nroot')
        self.assertIn("'alice\\nroot'", error.format_message())
        self.assertNotIn('\n', error.format_message())

    def test_passwords_accepted(self):
        for password, crypted in (
                ('x', False), ('with:colon', False), ('with space', False),
                ('tab\tand\rcr', False), ('ünïcødé-пароль', False),
                ('p' * up.MAX_PASSWORD_LENGTH, False),
                (HASH, True), ('$y$j9T$abc/def$ghi.jkl', True),
                ('!', True)):
            up.check_password(password, crypted)

    def test_passwords_refused_without_quoting_them(self):
        for password, crypted, reason in (
                ('', False, 'empty'), (None, False, 'empty'),
                ('p' * (up.MAX_PASSWORD_LENGTH + 1), False, 'longer'),
                ('line1\nline2', False, 'newline'),
                ('zq7\n', True, 'newline'),
                ('nul\0byte', False, 'NUL'),
                ('$6$salt$hash:0:0', True, 'crypt(3)'),
                ('$6$salt$ha sh', True, 'crypt(3)'),
                ('$6$salt$ha\tsh', True, 'crypt(3)'),
                ('$6$salt$\x1bhash', True, 'crypt(3)')):
            error = self.assertRaises(up.InvalidPassword, up.check_password,
                                      password, crypted)
            message = error.format_message()
            self.assertIn(reason, message)
            if password:
                self.assertNotIn(password.strip(), message)

    def test_crypted_refused_for_windows_only(self):
        windows = objects.Instance(os_type='windows')
        linux = objects.Instance(os_type='linux')
        unknown = objects.Instance(os_type=None)
        error = self.assertRaises(nova_exception.SetAdminPasswdNotSupported,
                                  up.check_crypted_supported, windows, True)
        self.assertIn('Windows', error.format_message())
        up.check_crypted_supported(windows, False)
        up.check_crypted_supported(linux, True)
        up.check_crypted_supported(unknown, True)


class ClaimsTest(test.NoDBTestCase):

    def setUp(self):
        super().setUp()
        self.extension = up.UserPassword(cfg.CONF)

    def test_claims_only_change_password_naming_a_user(self):
        claims = self.extension.claims
        self.assertTrue(claims('changePassword',
                               {'adminPass': 'x', 'userName': 'alice'}))
        self.assertTrue(claims('changePassword',
                               {'adminPass': 'x', 'userName': None}))
        self.assertFalse(claims('changePassword', {'adminPass': 'x'}))
        self.assertFalse(claims('changePassword', 'junk'))
        self.assertFalse(claims('createImage', {'userName': 'alice'}))

    def test_claims_crypted_alone_to_refuse_it(self):
        self.assertTrue(self.extension.claims(
            'changePassword', {'adminPass': HASH, 'crypted': True}))


class ComputeVirtAPI(fake.FakeVirtAPI):

    def __init__(self):
        super().__init__()
        self._compute = mock.Mock(additional_endpoints=[])


def make_instance(os_type=None, agent_enabled=True, key_data=None,
                  admin_user=None):
    system_metadata = {'image_disk_format': 'qcow2',
                       'image_container_format': 'bare'}
    if agent_enabled:
        system_metadata['image_hw_qemu_guest_agent'] = 'yes'
    if admin_user:
        system_metadata['image_os_admin_user'] = admin_user
    instance = objects.Instance(
        uuid='7d7c9b5e-7a7e-4a25-9a4c-1e4f2c0b1a11', os_type=os_type,
        key_data=key_data, image_ref='', system_metadata=system_metadata)
    instance.save = mock.Mock()
    return instance


class DriverTestBase(test.NoDBTestCase):

    def setUp(self):
        super().setUp()
        self.useFixture(nova_fixtures.LibvirtFixture())
        objects.register_all()
        qga_conf.register_opts(cfg.CONF)
        self.useFixture(fixtures.MockPatchObject(
            manager, 'installed',
            return_value={'user_password': up.UserPassword}))
        self.flags(extensions=['user_password'], group='qga_ext')
        self.flags(virt_type='qemu', group='libvirt')
        self.virtapi = ComputeVirtAPI()
        self.driver = driver.LibvirtDriver(self.virtapi)
        self.agent = mock.Mock(spec=agent.GuestAgent)
        self.guest_agent = self.useFixture(fixtures.MockPatchObject(
            self.driver, 'guest_agent', return_value=self.agent)).mock
        self.guest = mock.Mock()
        self.useFixture(fixtures.MockPatchObject(
            self.driver._host, 'get_guest', return_value=self.guest))
        self.logs = self.useFixture(fixtures.FakeLogger(level=logging.DEBUG))

    def tearDown(self):
        # Whatever a test did, no password may have reached a log.
        self.assertNotIn(PASSWORD, self.logs.output)
        self.assertNotIn(HASH, self.logs.output)
        super().tearDown()


class DriverTest(DriverTestBase):

    def test_without_user_name_nova_sets_roots_password(self):
        instance = make_instance()

        self.driver.set_admin_password(instance, PASSWORD)

        self.guest.set_user_password.assert_called_once_with('root', PASSWORD)
        self.agent.set_user_password.assert_not_called()

    def test_without_user_name_nova_sets_windows_administrator(self):
        self.driver.set_admin_password(make_instance(os_type='windows'),
                                       PASSWORD)
        self.guest.set_user_password.assert_called_once_with(
            'Administrator', PASSWORD)

    def test_without_user_name_nova_maps_unresponsive_agent_to_501(self):
        error = nova_fixtures.libvirt.make_libvirtError(
            nova_fixtures.libvirt.libvirtError, 'not responding',
            error_code=nova_fixtures.libvirt.VIR_ERR_AGENT_UNRESPONSIVE)
        self.guest.set_user_password.side_effect = error
        self.assertRaises(NotImplementedError,
                          self.driver.set_admin_password, make_instance(),
                          PASSWORD)

    def test_with_user_name_sets_that_users_password(self):
        instance = make_instance()

        self.driver.set_admin_password(instance, PASSWORD, user_name='alice')

        self.guest_agent.assert_called_once_with(instance)
        self.agent.set_user_password.assert_called_once_with(
            'alice', PASSWORD, crypted=False)
        self.guest.set_user_password.assert_not_called()
        self.assertIn('Password of guest user alice set', self.logs.output)

    def test_crypted(self):
        self.driver.set_admin_password(make_instance(os_type='linux'), HASH,
                                       user_name='alice', crypted=True)
        self.agent.set_user_password.assert_called_once_with(
            'alice', HASH, crypted=True)

    def test_crypted_refused_for_windows_before_the_guest(self):
        self.assertRaises(nova_exception.SetAdminPasswdNotSupported,
                          self.driver.set_admin_password,
                          make_instance(os_type='windows'), HASH,
                          user_name='Administrator', crypted=True)
        self.guest_agent.assert_not_called()

    def test_crypted_without_user_name_refused(self):
        self.assertRaises(up.InvalidUserName, self.driver.set_admin_password,
                          make_instance(), HASH, crypted=True)
        self.guest_agent.assert_not_called()
        self.guest.set_user_password.assert_not_called()

    def test_bad_user_name_refused_before_the_guest(self):
        for name in ('alice:0', 'alice\n', ''):
            self.assertRaises(up.InvalidUserName,
                              self.driver.set_admin_password,
                              make_instance(), PASSWORD, user_name=name)
        self.guest_agent.assert_not_called()

    def test_bad_password_refused_before_the_guest(self):
        self.assertRaises(up.InvalidPassword, self.driver.set_admin_password,
                          make_instance(), PASSWORD + '\n',
                          user_name='alice')
        self.guest_agent.assert_not_called()

    def test_image_without_guest_agent_refused_as_nova_does(self):
        self.assertRaises(nova_exception.QemuGuestAgentNotEnabled,
                          self.driver.set_admin_password,
                          make_instance(agent_enabled=False), PASSWORD,
                          user_name='alice')
        self.guest_agent.assert_not_called()

    def test_agent_errors_become_tagged_nova_exceptions(self):
        for error, nova_class, tag in (
                (agent.AgentNotConfigured(),
                 nova_exception.QemuGuestAgentNotEnabled,
                 exception.NOT_CONFIGURED),
                (agent.AgentNotConnected(),
                 nova_exception.InstanceAgentNotEnabled,
                 exception.NOT_CONNECTED),
                (agent.AgentTimeout(command='guest-set-user-password',
                                    timeout=10),
                 nova_exception.InstanceAgentNotEnabled, exception.TIMEOUT),
                (agent.AgentCommandDisabled(
                    command='guest-set-user-password'),
                 nova_exception.InstanceAgentNotEnabled,
                 exception.COMMAND_DISABLED),
                (agent.AgentCommandFailed(
                    command='guest-set-user-password',
                    reason='child process has failed to set user password'),
                 nova_exception.Invalid, exception.COMMAND_FAILED)):
            self.agent.set_user_password.side_effect = error
            raised = self.assertRaises(
                nova_class, self.driver.set_admin_password, make_instance(),
                PASSWORD, user_name='alice')
            self.assertEqual(tag, exception.agent_error_tag(raised))
            self.assertNotIn(PASSWORD, raised.format_message())

    def test_agent_calls_are_serialised_per_instance(self):
        instance = make_instance()
        lock = threading.Lock()
        self.useFixture(fixtures.MockPatchObject(
            self.driver, 'instance_lock', return_value=lock))

        def check_locked(*args, **kwargs):
            self.assertTrue(lock.locked())
        self.agent.set_user_password.side_effect = check_locked
        self.guest.set_user_password.side_effect = check_locked

        self.driver.set_admin_password(instance, PASSWORD, user_name='alice')
        self.driver.set_admin_password(instance, PASSWORD)

        self.driver.instance_lock.assert_called_with(instance)
        self.assertEqual(1, self.agent.set_user_password.call_count)
        self.assertEqual(1, self.guest.set_user_password.call_count)
        self.assertFalse(lock.locked())


class MetadataPasswordStorageTest(DriverTestBase):

    def test_stored_encrypted_for_the_metadata_service(self):
        instance = make_instance(key_data=SSH_RSA_KEY)

        self.driver.set_admin_password(instance, PASSWORD, user_name='root')

        stored = ''.join(instance.system_metadata[key] for key in sorted(
            key for key in instance.system_metadata
            if key.startswith('password_')))
        self.assertNotIn(PASSWORD, stored)
        self.assertEqual(PASSWORD, _RSA_KEY.decrypt(
            base64.b64decode(stored), padding.PKCS1v15()).decode())
        instance.save.assert_called_once_with()


class MetadataPasswordTest(DriverTestBase):
    """The password is kept for the metadata service only where nova does.
    """

    def setUp(self):
        super().setUp()
        self.save = self.useFixture(fixtures.MockPatchObject(
            self.driver, '_save_instance_password_if_sshkey_present')).mock

    def test_kept_for_the_user_nova_would_have_set(self):
        for instance, user in (
                (make_instance(key_data=SSH_RSA_KEY), 'root'),
                (make_instance(os_type='windows', key_data=SSH_RSA_KEY),
                 'Administrator'),
                (make_instance(admin_user='cloud', key_data=SSH_RSA_KEY),
                 'cloud')):
            self.save.reset_mock()
            self.driver.set_admin_password(instance, PASSWORD,
                                           user_name=user)
            self.save.assert_called_once_with(instance, PASSWORD)

    def test_not_kept_for_another_user_or_a_hash(self):
        instance = make_instance(admin_user='cloud', key_data=SSH_RSA_KEY)
        self.driver.set_admin_password(instance, PASSWORD, user_name='root')
        self.driver.set_admin_password(instance, PASSWORD, user_name='alice')
        self.driver.set_admin_password(instance, HASH, user_name='cloud',
                                       crypted=True)
        self.save.assert_not_called()

    def test_not_kept_when_the_guest_refused(self):
        self.agent.set_user_password.side_effect = agent.AgentNotConnected()
        self.assertRaises(nova_exception.InstanceAgentNotEnabled,
                          self.driver.set_admin_password,
                          make_instance(key_data=SSH_RSA_KEY), PASSWORD,
                          user_name='root')
        self.save.assert_not_called()


class FakeManager:
    """nova's ComputeManager.set_admin_password, as far as the driver sees.

    Like nova's, it hides any unexpected driver error behind a generic
    InstancePasswordSetFailed and re-raises agent-not-enabled errors.
    """

    def __init__(self, test_case):
        self.test_case = test_case
        self.seen = []

    def set_admin_password(self, context, instance, new_pass):
        self.seen.append(up._REQUEST.get())
        try:
            self.test_case.driver.set_admin_password(instance, new_pass)
        except (nova_exception.InstanceAgentNotEnabled,
                nova_exception.SetAdminPasswdNotSupported):
            raise
        except Exception:
            raise nova_exception.InstancePasswordSetFailed(
                instance=instance.uuid, reason='error setting admin password')


class EndpointTest(DriverTestBase):

    def setUp(self):
        super().setUp()
        self.manager = FakeManager(self)
        self.virtapi._compute = self.manager
        self.endpoint = self.driver.extensions[0].rpc_endpoint(self.driver)

    def test_target_is_the_plugins(self):
        self.assertEqual(rpc.TARGET, self.endpoint.target)

    def test_endpoint_registered_with_the_compute_manager(self):
        virtapi = ComputeVirtAPI()
        virt_driver = driver.LibvirtDriver(virtapi)
        self.assertIn('set_admin_password', [
            name for endpoint in virtapi._compute.additional_endpoints
            for name in dir(endpoint) if not name.startswith('_')])
        self.assertTrue(all(endpoint.target == rpc.TARGET for endpoint in
                            virtapi._compute.additional_endpoints))
        self.assertIsNotNone(virt_driver)

    def test_user_name_reaches_the_driver_through_nova_manager(self):
        instance = make_instance()

        self.endpoint.set_admin_password(mock.sentinel.ctx, instance,
                                         PASSWORD, 'alice', False)

        self.agent.set_user_password.assert_called_once_with(
            'alice', PASSWORD, crypted=False)
        request, = self.manager.seen
        self.assertEqual(('alice', False, instance.uuid),
                         (request.user_name, request.crypted,
                          request.instance_uuid))
        self.assertIsNone(up._REQUEST.get())

    def test_crypted_reaches_the_driver(self):
        self.endpoint.set_admin_password(mock.sentinel.ctx, make_instance(),
                                         HASH, 'alice', True)
        self.agent.set_user_password.assert_called_once_with(
            'alice', HASH, crypted=True)

    def test_request_not_applied_to_another_instance(self):
        other = make_instance()
        other.uuid = '11111111-2222-4333-8444-555555555555'

        def nested(context, instance, new_pass):
            self.driver.set_admin_password(other, new_pass)
        self.manager.set_admin_password = nested

        self.endpoint.set_admin_password(mock.sentinel.ctx, make_instance(),
                                         PASSWORD, 'alice', False)

        self.guest.set_user_password.assert_called_once_with('root', PASSWORD)
        self.agent.set_user_password.assert_not_called()

    def test_request_is_reset_on_failure(self):
        self.agent.set_user_password.side_effect = agent.AgentNotConnected()
        self.assertRaises(nova_exception.InstanceAgentNotEnabled,
                          self.endpoint.set_admin_password,
                          mock.sentinel.ctx, make_instance(), PASSWORD,
                          'alice', False)
        self.assertIsNone(up._REQUEST.get())
        # nova's own changePassword that follows is nova's again.
        self.driver.set_admin_password(make_instance(), PASSWORD)
        self.guest.set_user_password.assert_called_once_with('root', PASSWORD)

    def test_precise_reason_instead_of_nova_generic_one(self):
        self.agent.set_user_password.side_effect = agent.AgentCommandFailed(
            command='guest-set-user-password',
            reason='child process has failed to set user password')

        error = self.assertRaises(
            nova_exception.InstancePasswordSetFailed,
            self.endpoint.set_admin_password, mock.sentinel.ctx,
            make_instance(), PASSWORD, 'nobody', False)

        message = error.format_message()
        self.assertIn('Could not set the password of user nobody', message)
        self.assertIn('child process has failed to set user password',
                      message)
        self.assertIn('Check that the user exists in the guest', message)
        self.assertNotIn('error setting admin password', message)
        self.assertEqual(exception.COMMAND_FAILED,
                         exception.agent_error_tag(error))
        self.assertNotIn(PASSWORD, message)

    def test_validation_reason_reported(self):
        error = self.assertRaises(
            nova_exception.InstancePasswordSetFailed,
            self.endpoint.set_admin_password, mock.sentinel.ctx,
            make_instance(), PASSWORD, 'al:ice', False)
        self.assertIn('Invalid user name', error.format_message())
        self.assertNotIn('Check that the user exists', error.format_message())
        self.assertIsNone(exception.agent_error_tag(error))
        self.guest_agent.assert_not_called()

    def test_manager_errors_before_the_driver_pass_unchanged(self):
        not_running = nova_exception.InstancePasswordSetFailed(
            instance='x', reason='instance x is not running')
        self.manager.set_admin_password = mock.Mock(side_effect=not_running)
        error = self.assertRaises(
            nova_exception.InstancePasswordSetFailed,
            self.endpoint.set_admin_password, mock.sentinel.ctx,
            make_instance(), PASSWORD, 'alice', False)
        self.assertIs(not_running, error)

    def test_concurrent_requests_do_not_see_each_other(self):
        seen = {}
        barrier = threading.Barrier(2, timeout=10)

        def manager_call(context, instance, new_pass):
            barrier.wait()
            seen[new_pass] = up._REQUEST.get().user_name
        self.manager.set_admin_password = manager_call

        threads = [threading.Thread(
            target=self.endpoint.set_admin_password,
            args=(mock.sentinel.ctx, make_instance(), 'pw-%s' % user, user,
                  False)) for user in ('alice', 'bob')]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        self.assertEqual({'pw-alice': 'alice', 'pw-bob': 'bob'}, seen)
