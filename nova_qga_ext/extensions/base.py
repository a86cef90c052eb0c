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

"""The base class of a guest-agent feature.

An extension is one module that holds everything about its feature: its
options, its policy rules, the server actions it claims on the API side and
the RPC methods and driver patches it brings to the compute side. The layers
around the extensions (``api``, ``rpc``, ``virt``) only dispatch to them.
"""

import abc
import functools


class Extension(metaclass=abc.ABCMeta):
    """A feature loaded by name from ``[qga_ext] extensions``."""

    #: oslo.config options, registered in ``[qga_ext]`` when loaded.
    CONFIG_OPTS = []

    #: oslo.policy ``DocumentedRuleDefault`` objects for the feature.
    POLICY_RULES = []

    #: The ``nova_qga_ext.api.controller.ActionController`` subclass with
    #: the server actions the extension adds to the API, if any.
    API_CONTROLLER = None

    #: Names of LibvirtDriver methods that the extension wraps. For each
    #: name the extension defines a method of that name whose first argument
    #: is the driver's original bound method.
    DRIVER_METHODS = ()

    def __init__(self, conf):
        self.conf = conf

    @property
    @abc.abstractmethod
    def name(self):
        """The entry point name of the extension."""

    @functools.cached_property
    def api_controller(self):
        """The controller instance of the API node, or None."""
        if self.API_CONTROLLER is None:
            return None
        return self.API_CONTROLLER(self)

    def claims(self, action, body):
        """Whether the API filter should route this server action to us.

        The default claims every action of :attr:`api_controller`; an
        extension that extends one of nova's own actions narrows this down.
        """
        controller = self.api_controller
        return controller is not None and action in controller.wsgi_actions

    def rpc_endpoint(self, driver):
        """Return the RPC endpoint object for the compute service, or None.

        Its ``target`` must be ``nova_qga_ext.rpc.TARGET``.
        """
        return None

    def patch_driver(self, driver):
        """Wrap the driver methods named in :attr:`DRIVER_METHODS`."""
        for method_name in self.DRIVER_METHODS:
            original = getattr(driver, method_name)
            wrapper = functools.partial(getattr(self, method_name), original)
            functools.update_wrapper(wrapper, original)
            setattr(driver, method_name, wrapper)
