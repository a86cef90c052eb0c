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

"""The contract for guest-agent failures that cross RPC.

Only ``nova.exception`` types are deserialised by nova-api (anything else
arrives as a RemoteError, hence a 500), so the compute side raises nova
exceptions tagged with an ``agent_error`` keyword. oslo.messaging carries an
exception's kwargs across RPC, which lets the API side pick a precise HTTP
status from the tag (``nova_qga_ext.api.controller``); the compute side maps
agent errors to tags in ``nova_qga_ext.virt.driver``.
"""

NOT_CONFIGURED = 'not_configured'
NOT_CONNECTED = 'not_connected'
TIMEOUT = 'timeout'
COMMAND_DISABLED = 'command_disabled'
COMMAND_FAILED = 'command_failed'
PID_UNKNOWN = 'pid_unknown'


def agent_error_tag(error):
    """Return the ``agent_error`` tag of a nova exception, or None."""
    return getattr(error, 'kwargs', {}).get('agent_error')
