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

"""The plugin's server actions, sent through openstacksdk's compute proxy."""

from __future__ import annotations

from typing import Any

from openstack import exceptions as sdk_exceptions
from osc_lib import exceptions

from nova_qga_ext.i18n import _


def command_error(
        exc: sdk_exceptions.SDKException,
        what: str) -> exceptions.CommandError:
    """Turn an SDK error into a one-line CommandError.

    :param exc: the error raised by openstacksdk
    :param what: what failed, e.g. "guestExec on server <id>"
    """
    if isinstance(exc, sdk_exceptions.HttpException) and exc.status_code:
        reason = exc.details or exc.message
        status = _('HTTP %s') % exc.status_code
        if exc.request_id:
            status = _('%(status)s, request %(id)s') % {
                'status': status, 'id': exc.request_id}
        reason = '%s (%s)' % (reason, status)
    else:
        reason = str(exc)
    message = _('%(what)s failed: %(reason)s') % {
        'what': what, 'reason': reason}
    # Nova and the SDK sometimes wrap long messages; the CLI promises one
    # line per error.
    return exceptions.CommandError(' '.join(message.split()))


class ServerActions:
    """Finds servers and posts the plugin's actions to them.

    :param compute: the compute proxy of OSC's authenticated SDK connection
    :param api_version: the compute API version OSC was asked for
    """

    def __init__(self, compute: Any, api_version: str) -> None:
        self.compute = compute
        # A bare major version ("2", the SDK's default) selects no
        # microversion; keystoneauth would send it as "2.0", which Nova
        # rejects.
        if api_version == 'latest' or '.' in api_version:
            self.microversion: str | None = api_version
        else:
            self.microversion = None

    def find_server(self, name_or_id: str, all_projects: bool = False) -> Any:
        try:
            return self.compute.find_server(
                name_or_id, ignore_missing=False, all_projects=all_projects)
        except sdk_exceptions.SDKException as exc:
            raise command_error(
                exc, _('Looking up server %s') % name_or_id)

    def act(self, server: Any, action: str, body: dict[str, Any], *,
            secret: bool = False) -> dict[str, Any]:
        """POST ``{action: body}`` to the server and return the JSON reply.

        :param secret: the body carries a password, environment values or
            input; keep it out of keystoneauth's debug log (``--debug``).
        """
        kwargs: dict[str, Any] = {'json': {action: body}}
        if self.microversion:
            kwargs['microversion'] = self.microversion
        if secret:
            kwargs['log'] = False
        try:
            response = self.compute.post(
                '/servers/%s/action' % server.id, **kwargs)
            sdk_exceptions.raise_from_response(response)
        except sdk_exceptions.SDKException as exc:
            raise command_error(exc, _('%(action)s on server %(id)s') % {
                'action': action, 'id': server.id})
        return response.json() if response.content else {}
