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

"""The API-side machinery the extensions' controllers share.

``ActionResource`` is the nova ``wsgi.Resource`` that the paste filter
hands claimed server actions to, so nova's validation, fault format,
request ids and microversion headers apply. ``ActionController`` is the base
of each extension's ``wsgi.Controller``: instance lookup, state checks,
policy and the mapping of compute-side failures to HTTP statuses.
"""

import contextlib
import functools
import json

from nova.api.openstack import common
from nova.api.openstack import wsgi
from nova.api import validation
from nova.compute import api as compute
from nova.compute import vm_states
from nova import exception as nova_exception
import webob.exc

from nova_qga_ext import exception
from nova_qga_ext.i18n import _
from nova_qga_ext import policies
from nova_qga_ext import rpc

_REDACTED = '***'

_AGENT_ERROR_STATUS = {
    exception.TIMEOUT: webob.exc.HTTPGatewayTimeout,
    exception.PID_UNKNOWN: webob.exc.HTTPNotFound,
}

#: Nova exceptions that mean "not now, because of the server's state".
_CONFLICTS = (
    nova_exception.InstanceInvalidState,
    nova_exception.InstanceAgentNotEnabled,
    nova_exception.SetAdminPasswdNotSupported,
    nova_exception.InstancePasswordSetFailed,
    nova_exception.InstanceQuiesceFailed,
    nova_exception.UnexpectedTaskStateError,
    rpc.ExtensionNotOnHost,
)


def to_http_error(error):
    """Return the webob error for a nova exception, or None if unknown.

    Guest-agent failures are 409 Conflict (the guest cannot do it now),
    except an agent or compute host that did not answer in time (504) and
    an unknown exec pid (404). A compute node's refusal by its own
    configuration (``nova.exception.Forbidden``) is 403.
    """
    message = error.format_message()
    tag = exception.agent_error_tag(error)
    if tag is not None:
        return _AGENT_ERROR_STATUS.get(tag, webob.exc.HTTPConflict)(
            explanation=message)
    if isinstance(error, rpc.ComputeHostTimeout):
        return webob.exc.HTTPGatewayTimeout(explanation=message)
    if isinstance(error, _CONFLICTS):
        return webob.exc.HTTPConflict(explanation=message)
    if isinstance(error, nova_exception.Forbidden):
        return webob.exc.HTTPForbidden(explanation=message)
    if isinstance(error, nova_exception.NotFound):
        return webob.exc.HTTPNotFound(explanation=message)
    return None


@contextlib.contextmanager
def compute_errors_as_http():
    try:
        yield
    except nova_exception.NovaException as error:
        http_error = to_http_error(error)
        if http_error is None:
            raise
        raise http_error from None


def secret_schema(request_schema, secrets):
    """``validation.schema`` that never echoes a secret in its 400 message.

    Nova's validation error quotes the offending value, or the whole object
    around it; each secret that the body carries is masked in that text.

    :param secrets: a function returning the secret strings of a body.
    """
    def decorator(func):
        validated = validation.schema(request_schema)(func)

        @functools.wraps(validated)
        def wrapper(*args, **kwargs):
            try:
                return validated(*args, **kwargs)
            except nova_exception.ValidationError as error:
                detail = error.format_message()
                for secret in secrets(kwargs['body']):
                    for form in (repr(secret), str(secret)):
                        detail = detail.replace(form, _REDACTED)
                raise nova_exception.ValidationError(detail=detail) from None
        return wrapper
    return decorator


class ActionResource(wsgi.Resource):
    """Dispatches the claimed server actions to the extension controllers.

    nova's Resource logs every action body at DEBUG with only password-like
    keys masked; exec input and environment values would be logged as they
    are, so the body is logged as its action name alone.
    """

    def __init__(self, controllers):
        super().__init__(None)
        for controller in controllers:
            self.register_subcontroller_actions(controller)

    def _process_stack(self, request, action, action_args, content_type,
                       body, accept):
        redacted = body
        if body:
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = None
            # Only an object's keys are safe to log: those of a list body
            # would be its elements.
            redacted = b''
            if isinstance(parsed, dict):
                redacted = json.dumps(
                    dict.fromkeys(parsed, _REDACTED)).encode()
        return super()._process_stack(request, action, action_args,
                                      content_type, redacted, accept)

    def _get_request_content(self, body, request):
        return super()._get_request_content(request.body, request)


class ActionController(wsgi.Controller):
    """Base class of an extension's server-action controller."""

    def __init__(self, extension):
        super().__init__()
        self.extension = extension
        self.compute_api = compute.API()
        self.compute_rpcapi = rpc.ComputeAPI()

    def get_instance(self, context, server_id, rule):
        """Look the server up and authorize ``rule`` against it."""
        instance = common.get_instance(self.compute_api, context, server_id)
        policies.authorize(context, rule, target={
            'user_id': instance.user_id,
            'project_id': instance.project_id})
        return instance

    @staticmethod
    def check_ready(instance, allow_task=False):
        """Require an ACTIVE, unlocked server with no task in progress.

        The lock is checked for every caller: nova's own check lets admins
        through, but an operator locks a server precisely so that nothing,
        a guest command included, touches it.
        """
        if instance.vm_state != vm_states.ACTIVE:
            raise webob.exc.HTTPConflict(explanation=_(
                'Server %(id)s is %(state)s; it must be ACTIVE.') % {
                    'id': instance.uuid, 'state': instance.vm_state})
        if instance.locked:
            raise webob.exc.HTTPConflict(explanation=_(
                'Server %s is locked; unlock it first.') % instance.uuid)
        if not allow_task and instance.task_state is not None:
            raise webob.exc.HTTPConflict(explanation=_(
                'Server %(id)s has task %(task)s in progress; retry when it '
                'has finished.') % {'id': instance.uuid,
                                    'task': instance.task_state})

    def call_compute(self, context, instance, method, rpc_timeout=None,
                     **kwargs):
        """Call the extension's compute-side ``method`` for the instance."""
        with compute_errors_as_http():
            return self.compute_rpcapi.call(
                context, instance, method, self.extension.name,
                rpc_timeout=rpc_timeout, **kwargs)

    def require_on_host(self, context, instance):
        """409 unless the instance's compute host serves the extension.

        Asked before any state changes, so a host without the plugin never
        leaves a task_state behind.
        """
        with compute_errors_as_http():
            self.compute_rpcapi.require(context, instance,
                                        self.extension.name)
