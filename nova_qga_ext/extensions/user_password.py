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

"""changePassword with a ``userName``: set any guest user's password.

API side: the filter hands over a ``changePassword`` body only when it
carries ``userName`` (or ``crypted``, see :meth:`UserPassword.claims`);
every other changePassword stays nova's. Compute side: the request goes
through nova's own ``ComputeManager.set_admin_password``, so its task_state
handling, instance faults, notifications and ``compute_set_admin_password``
event apply unchanged. The user name and the crypted flag reach the driver
through a context variable that the RPC endpoint sets around that call,
since the manager passes the driver only the instance and the password.

What stays nova's:

* without a user name, the driver method is nova's own: the image's
  ``os_admin_user``, else Administrator (Windows) or root;
* the ``hw_qemu_guest_agent`` image property is required (409);
* the password is kept for the metadata service (encrypted with the
  instance's ssh-rsa key) only when it is the password nova would have set:
  that of the user nova would have chosen, in clear text. Another user's
  password or a hash there would be handed out as the admin password.

What differs, on purpose:

* an unresponsive agent is 409 (not connected) or 504 (timed out), naming
  the cause, where nova answers 501 Not Implemented;
* user names and passwords are checked before the guest is touched, on the
  API and again on the compute node (:func:`check_user_name`,
  :func:`check_password`); nova accepts any string as a password, this API
  requires 1 to :data:`MAX_PASSWORD_LENGTH` characters, because an empty
  password would make the account passwordless;
* a guest agent refusal (for instance a user that does not exist in the
  guest) is reported with the agent's reason, where nova's manager says
  only "error setting admin password".

There is no option: the limits are the guest's, and who may send a
crypted hash is a matter of policy like any other password change.

Secrets: the password is never logged, put in an exception, an instance
action or a notification (nova's notification wrapper drops ``new_pass``).
"""

import contextlib
import contextvars
import dataclasses
import unicodedata

from nova.api.openstack import wsgi
from nova.compute import instance_actions
from nova.compute import task_states
from nova import exception as nova_exception
from nova.policies import admin_password as nova_admin_password_policies
from nova.policies import base as nova_policies
from oslo_config import cfg
from oslo_log import log as logging
from oslo_policy import policy
from oslo_utils import excutils
import webob.exc

from nova_qga_ext.api import controller
from nova_qga_ext import exception
from nova_qga_ext.extensions import base
from nova_qga_ext.i18n import _
from nova_qga_ext import policies
from nova_qga_ext import rpc
from nova_qga_ext.virt import driver as virt_driver

LOG = logging.getLogger(__name__)

ACTION = 'changePassword'
RULE = policies.RULE_PREFIX + 'change-password-user'

#: Linux's limit (useradd, utmp's UT_NAMESIZE); Windows allows 20.
MAX_USER_NAME_LENGTH = 32

#: Proxmox VE's limit for its own guest-agent password call.
MAX_PASSWORD_LENGTH = 1024

POLICY_RULES = [
    policy.DocumentedRuleDefault(
        name=RULE,
        check_str=nova_policies.PROJECT_MEMBER_OR_ADMIN,
        description='Change the password of a named user of a server '
                    'through the QEMU guest agent (changePassword with '
                    'userName). The caller must also pass nova\'s '
                    '"%s" rule, so that restricting nova\'s '
                    'changePassword restricts this one too.'
                    % nova_admin_password_policies.BASE_POLICY_NAME,
        operations=[{'method': 'POST',
                     'path': '/servers/{server_id}/action (%s with '
                             'userName)' % ACTION}],
        scope_types=['project']),
]

SCHEMA = {
    'type': 'object',
    'properties': {
        ACTION: {
            'type': 'object',
            'properties': {
                'adminPass': {'type': 'string', 'minLength': 1,
                              'maxLength': MAX_PASSWORD_LENGTH},
                # The characters are checked by check_user_name, with a
                # clearer message than a pattern mismatch.
                'userName': {'type': 'string', 'minLength': 1,
                             'maxLength': MAX_USER_NAME_LENGTH},
                'crypted': {'type': 'boolean'},
            },
            'required': ['adminPass', 'userName'],
            'additionalProperties': False,
        },
    },
    'required': [ACTION],
    'additionalProperties': False,
}

# chpasswd reads "user:password" lines, and qemu-ga refuses a ':' in the
# name and a newline in either.
_USER_NAME_FORBIDDEN = frozenset(':')
# No crypt(3) hash contains these; `chpasswd -e` writes the hash verbatim
# into /etc/shadow, where a ':' would start the next field (password
# ageing, expiry) of the account.
_HASH_FORBIDDEN = frozenset(': \t')


# chpasswd in the guest says no more than that it failed.
_GUEST_REFUSED_HINT = _('Check that the user exists in the guest and that '
                        'the password meets the guest\'s password policy.')


class InvalidUserName(nova_exception.Invalid):
    msg_fmt = _('Invalid user name %(name)s: %(reason)s.')


class InvalidPassword(nova_exception.Invalid):
    msg_fmt = _('Invalid password: %(reason)s.')


def _is_control(character):
    return unicodedata.category(character) == 'Cc'


def _has_surrogate(text):
    # JSON can carry a lone surrogate ("\ud800") and Python decodes it,
    # but it has no UTF-8 form for libvirt's C strings.
    return any(unicodedata.category(c) == 'Cs' for c in text)


def check_user_name(name):
    """Raise InvalidUserName unless the guest agent can take ``name``."""
    if not isinstance(name, str) or not name:
        raise InvalidUserName(name=repr(name), reason=_('it is empty'))
    if len(name) > MAX_USER_NAME_LENGTH:
        raise InvalidUserName(
            name=repr(name),
            reason=_('it is longer than %d characters') %
            MAX_USER_NAME_LENGTH)
    if any(_is_control(c) or c in _USER_NAME_FORBIDDEN for c in name):
        raise InvalidUserName(
            name=repr(name),
            reason=_('it contains ":" or control characters (newline '
                     'included)'))
    if _has_surrogate(name):
        raise InvalidUserName(name=repr(name),
                              reason=_('it is not valid Unicode'))


def check_password(password, crypted):
    """Raise InvalidPassword unless the agent can take it; never quotes it.

    A NUL cannot pass libvirt's C strings, qemu-ga refuses a newline.
    """
    if not isinstance(password, str) or not password:
        raise InvalidPassword(reason=_('it is empty'))
    if len(password) > MAX_PASSWORD_LENGTH:
        raise InvalidPassword(reason=_('it is longer than %d characters') %
                              MAX_PASSWORD_LENGTH)
    if '\n' in password or '\0' in password:
        raise InvalidPassword(reason=_('it contains a newline or a NUL '
                                       'character'))
    if _has_surrogate(password):
        raise InvalidPassword(reason=_('it is not valid Unicode'))
    if crypted and any(_is_control(c) or c in _HASH_FORBIDDEN
                       for c in password):
        raise InvalidPassword(reason=_(
            'a crypted password is a crypt(3) hash, which never contains '
            '":", blanks or control characters'))


def check_crypted_supported(instance, crypted):
    """Refuse a pre-hashed password for a Windows guest.

    qemu-ga sets Windows passwords through NetUserSetInfo, which takes
    clear text only.
    """
    if crypted and instance.os_type == 'windows':
        raise nova_exception.SetAdminPasswdNotSupported(message=_(
            'Crypted passwords are not supported for Windows guests '
            '(os_type windows); send the password in clear text.'))


def nova_admin_user(instance):
    """The user whose password nova's changePassword sets."""
    user = instance.image_meta.properties.get('os_admin_user')
    if user:
        return user
    return 'Administrator' if instance.os_type == 'windows' else 'root'


@dataclasses.dataclass
class _Request:
    """The part of a request that nova's manager does not pass on."""

    instance_uuid: str
    user_name: str
    crypted: bool
    #: The precise failure, which nova's manager would replace with its
    #: generic "error setting admin password".
    error: Exception = None


# Set by the RPC endpoint around its synchronous call of nova's manager, in
# the RPC worker's thread (or green thread: each has its own context).
_REQUEST = contextvars.ContextVar('nova_qga_ext_user_password',
                                  default=None)


def _secrets(body):
    entity = body.get(ACTION) if isinstance(body, dict) else None
    password = entity.get('adminPass') if isinstance(entity, dict) else None
    return [password] if isinstance(password, str) and password else []


class UserPasswordController(controller.ActionController):

    @wsgi.response(202)
    @wsgi.expected_errors((400, 403, 404, 409, 504))
    @wsgi.action(ACTION)
    @controller.secret_schema(SCHEMA, secrets=_secrets)
    def change_password(self, req, id, body):
        context = req.environ['nova.context']
        instance = self.get_instance(context, id, RULE)
        context.can(nova_admin_password_policies.BASE_POLICY_NAME,
                    target={'user_id': instance.user_id,
                            'project_id': instance.project_id})
        entity = body[ACTION]
        user_name = entity['userName']
        password = entity['adminPass']
        crypted = entity.get('crypted', False)
        try:
            check_user_name(user_name)
            check_password(password, crypted)
        except nova_exception.Invalid as error:
            raise webob.exc.HTTPBadRequest(explanation=error.format_message())
        self.check_ready(instance)
        with controller.compute_errors_as_http():
            check_crypted_supported(instance, crypted)
        self.require_on_host(context, instance)

        # As nova's compute API does, minus its admin bypass of the lock.
        instance.task_state = task_states.UPDATING_PASSWORD
        with controller.compute_errors_as_http():
            instance.save(expected_task_state=[None])
        try:
            self.compute_api._record_action_start(
                context, instance, instance_actions.CHANGE_PASSWORD)
            # The guest may take the agent timeout on top of nova's usual
            # RPC budget (yescrypt hashing, a lock held by another agent
            # operation); only past both is the compute node given up on.
            self.call_compute(context, instance, 'set_admin_password',
                              rpc_timeout=(self.extension.conf.qga_ext
                                           .agent_timeout +
                                           cfg.CONF.rpc_response_timeout),
                              new_pass=password, user_name=user_name,
                              crypted=crypted)
        except Exception:
            with excutils.save_and_reraise_exception():
                self._restore_task_state(instance)

    @staticmethod
    def _restore_task_state(instance):
        # nova's manager resets it itself when it ran; this covers a call
        # that never reached it (timeout, host without the endpoint), where
        # nova would leave the server stuck in updating_password.
        instance.task_state = None
        with contextlib.suppress(nova_exception.UnexpectedTaskStateError,
                                 nova_exception.InstanceNotFound):
            instance.save(
                expected_task_state=[task_states.UPDATING_PASSWORD])


class UserPasswordEndpoint:
    """Compute side: nova's set_admin_password, for a named user."""

    target = rpc.TARGET

    def __init__(self, driver):
        self._driver = driver

    def set_admin_password(self, context, instance, new_pass, user_name,
                           crypted):
        request = _Request(instance.uuid, user_name, crypted)
        token = _REQUEST.set(request)
        try:
            self._driver.virtapi._compute.set_admin_password(
                context, instance, new_pass)
        except nova_exception.InstancePasswordSetFailed:
            if request.error is None:
                raise
            tag = exception.agent_error_tag(request.error)
            reason = request.error.format_message()
            if tag == exception.COMMAND_FAILED:
                reason += ' ' + _GUEST_REFUSED_HINT
            raise nova_exception.InstancePasswordSetFailed(
                _('Could not set the password of user %(user)s on server '
                  '%(instance)s: %(reason)s') % {
                      'user': user_name, 'instance': instance.uuid,
                      'reason': reason},
                instance=instance.uuid, reason=reason,
                agent_error=tag) from None
        finally:
            _REQUEST.reset(token)


class UserPassword(base.Extension):
    name = 'user_password'
    POLICY_RULES = POLICY_RULES
    API_CONTROLLER = UserPasswordController
    DRIVER_METHODS = ('set_admin_password',)

    def __init__(self, conf):
        super().__init__(conf)
        self._driver = None

    def claims(self, action, body):
        """Only a changePassword that names a user, or asks for crypted.

        ``crypted`` alone is claimed too, to be refused (userName is
        required): on the legacy v2 API nova would drop the flag and set
        root's password to the hash itself.
        """
        return (action == ACTION and isinstance(body, dict) and
                ('userName' in body or 'crypted' in body))

    def patch_driver(self, driver):
        self._driver = driver
        super().patch_driver(driver)

    def rpc_endpoint(self, driver):
        return UserPasswordEndpoint(driver)

    def set_admin_password(self, original, instance, new_pass,
                           user_name=None, crypted=False):
        """nova's set_admin_password, with an optional guest user name.

        The user name and crypted flag come as arguments or, when nova's
        manager calls for our RPC endpoint, from the endpoint's request.
        The per-instance lock is taken here rather than in the endpoint:
        it is not re-entrant, and here it also serialises nova's own
        changePassword with the other agent operations on the instance.
        """
        request = _REQUEST.get()
        if (user_name is None and request is not None and
                request.instance_uuid == instance.uuid):
            user_name, crypted = request.user_name, request.crypted
        if user_name is None and not crypted:
            with self._driver.instance_lock(instance):
                return original(instance, new_pass)
        try:
            self._set_user_password(instance, new_pass, user_name, crypted)
        except nova_exception.NovaException as error:
            if request is not None:
                request.error = error
            raise

    def _set_user_password(self, instance, new_pass, user_name, crypted):
        check_user_name(user_name)
        check_password(new_pass, crypted)
        check_crypted_supported(instance, crypted)
        driver = self._driver
        driver._can_set_admin_password(instance.image_meta)
        with driver.instance_lock(instance), \
                virt_driver.agent_errors_as_nova_exceptions():
            driver.guest_agent(instance).set_user_password(
                user_name, new_pass, crypted=crypted)
        LOG.info('Password of guest user %(user)s set (crypted: '
                 '%(crypted)s)', {'user': user_name, 'crypted': crypted},
                 instance=instance)
        if not crypted and user_name == nova_admin_user(instance):
            driver._save_instance_password_if_sshkey_present(instance,
                                                             new_pass)
