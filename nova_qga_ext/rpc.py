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

"""The plugin's own RPC interface to nova-compute.

The compute service serves it next to nova's ComputeManager API, on the
same ``compute`` topic, under its own namespace and version so that it is
independent of nova's RPC version and ``[upgrade_levels]`` pins. Each
extension brings its own endpoint object with this target; oslo.messaging
dispatches a method to the endpoint that has it.
"""

from nova import exception as nova_exception
from nova.objects import base as objects_base
from nova import rpc as nova_rpc
from oslo_config import cfg
from oslo_log import log as logging
import oslo_messaging as messaging

from nova_qga_ext.i18n import _

LOG = logging.getLogger(__name__)
CONF = cfg.CONF

NAMESPACE = 'nova_qga_ext'
VERSION = '1.0'
TOPIC = 'compute'

#: The target every compute-side endpoint declares.
TARGET = messaging.Target(namespace=NAMESPACE, version=VERSION)


class ExtensionNotOnHost(nova_exception.Invalid):
    msg_fmt = _('The compute host %(host)s of the server does not serve '
                '%(feature)s: install nova-qga-ext there, set '
                '[DEFAULT] compute_driver = qga_ext.LibvirtDriver and enable '
                'the extension in [qga_ext] extensions, then restart '
                'nova-compute.')
    code = 409


class ComputeHostTimeout(nova_exception.NovaException):
    msg_fmt = _('The compute host %(host)s did not answer within '
                '%(timeout)s seconds.')
    code = 504


class PingEndpoint:
    """Answers the API's capability check before it changes any state."""

    target = TARGET

    def __init__(self, extension_names):
        self._extension_names = list(extension_names)

    def ping(self, context):
        return {'extensions': self._extension_names}


class ComputeAPI:
    """Client side, used by nova-api.

    Routing is cells-aware: nova-api targets the request context at the
    instance's cell when it looks the instance up, and ``ClientRouter``
    picks that cell's transport from the context.
    """

    def __init__(self):
        target = messaging.Target(topic=TOPIC, namespace=NAMESPACE,
                                  version=VERSION)
        client = nova_rpc.get_client(
            target, serializer=objects_base.NovaObjectSerializer())
        self._router = nova_rpc.ClientRouter(client)

    def require(self, context, instance, extension_name):
        """Raise ExtensionNotOnHost unless the host serves the extension."""
        reply = self._call(context, instance.host, 'ping', extension_name)
        if extension_name not in reply['extensions']:
            raise ExtensionNotOnHost(host=instance.host,
                                     feature=extension_name)

    def call(self, context, instance, method, extension_name,
             rpc_timeout=None, **kwargs):
        """Call ``method`` on the instance's compute host.

        :param extension_name: names the feature in the error raised when
            the host does not have it.
        :param rpc_timeout: seconds to wait for the reply; nova's
            ``rpc_response_timeout`` when None. Beyond the heartbeat
            threshold the call is kept alive by call-monitor heartbeats.
            Not named ``timeout``, which is left to the methods' own
            arguments (guest_exec has one).
        :raises ExtensionNotOnHost: the host has no plugin endpoint, or an
            older one without the method.
        :raises ComputeHostTimeout: no reply in time.
        """
        return self._call(context, instance.host, method, extension_name,
                          rpc_timeout, instance=instance, **kwargs)

    def _call(self, context, host, method, extension_name,
              rpc_timeout=None, **kwargs):
        timeout = rpc_timeout or CONF.rpc_response_timeout
        cctxt = self._router.client(context).prepare(
            server=host, timeout=timeout,
            call_monitor_timeout=min(timeout, CONF.rpc_response_timeout))
        try:
            return cctxt.call(context, method, **kwargs)
        except (messaging.UnsupportedVersion, messaging.NoSuchMethod):
            raise ExtensionNotOnHost(host=host, feature=extension_name)
        except messaging.RemoteError as error:
            if error.exc_type in ('UnsupportedVersion', 'NoSuchMethod'):
                raise ExtensionNotOnHost(host=host, feature=extension_name)
            raise
        except messaging.MessagingTimeout:
            raise ComputeHostTimeout(host=host, timeout=timeout)
