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

"""nova's LibvirtDriver with the enabled extensions applied.

Enable it on a compute node with ``[DEFAULT] compute_driver =
qga_ext.LibvirtDriver``. It loads the extensions named in ``[qga_ext]
extensions``, lets each wrap the driver methods it declares, and serves
their RPC endpoints next to nova's own on the compute topic.
"""

import contextlib

from nova import exception as nova_exception
from nova import utils
from nova.virt.libvirt import driver as libvirt_driver
from oslo_concurrency import lockutils
from oslo_config import cfg
from oslo_log import log as logging

from nova_qga_ext import agent
from nova_qga_ext import exception
from nova_qga_ext.extensions import manager
from nova_qga_ext import rpc

try:
    import libvirt_qemu
except ImportError:
    libvirt_qemu = None

LOG = logging.getLogger(__name__)
CONF = cfg.CONF

# Agent error class -> (nova exception class, agent_error tag); the first
# match wins, so subclasses come before their bases.
_AGENT_ERRORS = (
    (agent.AgentNotConfigured, nova_exception.QemuGuestAgentNotEnabled,
     exception.NOT_CONFIGURED),
    (agent.AgentNotConnected, nova_exception.InstanceAgentNotEnabled,
     exception.NOT_CONNECTED),
    (agent.AgentTimeout, nova_exception.InstanceAgentNotEnabled,
     exception.TIMEOUT),
    (agent.AgentCommandDisabled, nova_exception.InstanceAgentNotEnabled,
     exception.COMMAND_DISABLED),
    (agent.ExecPidUnknown, nova_exception.NotFound, exception.PID_UNKNOWN),
    (agent.AgentCommandFailed, nova_exception.Invalid,
     exception.COMMAND_FAILED),
)


def to_nova_exception(error):
    """Return the nova exception that carries an agent error across RPC."""
    for agent_class, nova_class, tag in _AGENT_ERRORS:
        if isinstance(error, agent_class):
            return nova_class(message=error.format_message(),
                              agent_error=tag)
    return nova_exception.NovaException(message=error.format_message())


@contextlib.contextmanager
def agent_errors_as_nova_exceptions():
    try:
        yield
    except agent.AgentError as error:
        raise to_nova_exception(error) from None


class LibvirtDriver(libvirt_driver.LibvirtDriver):

    def __init__(self, virtapi, read_only=False):
        super().__init__(virtapi, read_only)
        self.extensions = manager.load(CONF)
        for extension in self.extensions:
            extension.patch_driver(self)
        # The agent's raw-command module blocks in C; in eventlet mode it
        # must run in a native thread, as nova does for libvirt itself.
        self.qemu_api = utils.tpool_wrap(libvirt_qemu)
        self._register_rpc_endpoints(virtapi)

    def _register_rpc_endpoints(self, virtapi):
        # A driver built outside a compute service (nova's own driver unit
        # tests, tools) has no manager to serve RPC with.
        compute_manager = getattr(virtapi, '_compute', None)
        if compute_manager is None:
            return
        endpoints = [rpc.PingEndpoint(ext.name for ext in self.extensions)]
        endpoints.extend(
            endpoint for endpoint in (
                ext.rpc_endpoint(self) for ext in self.extensions)
            if endpoint is not None)
        compute_manager.additional_endpoints.extend(endpoints)

    def guest_agent(self, instance, **options):
        """Return the guest-agent client for a running instance's domain.

        :param options: keyword arguments of ``agent.GuestAgent`` that
            override the defaults (e.g. ``max_output_bytes``, ``qemu``).
        """
        guest = self._host.get_guest(instance)
        options = {'timeout': CONF.qga_ext.agent_timeout,
                   'qemu': self.qemu_api, **options}
        return agent.GuestAgent(guest._domain, **options)

    @staticmethod
    def instance_lock(instance):
        """Serialise agent operations on one instance, and only on it."""
        return lockutils.lock('nova-qga-ext-%s' % instance.uuid)
