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

"""OpenStackClient plugin module (``openstack.cli.extension``).

The plugin's commands live in the compute command group
(``openstack.compute.v2``); this module gives them their client as
``client_manager.qga_ext``.
"""

from __future__ import annotations

import argparse
from typing import Any

from nova_qga_ext.osc import client

API_NAME = 'qga_ext'
# The plugin's actions are server actions of the compute API, so the compute
# API version (--os-compute-api-version / OS_COMPUTE_API_VERSION) governs
# them; a separate option could only disagree with it.
API_VERSION_OPTION = 'os_compute_api_version'
DEFAULT_API_VERSION = '2.1'
API_VERSIONS = ('2', '2.1')


def make_client(instance: Any) -> client.ServerActions:
    """Build the client from OSC's authenticated openstacksdk connection."""
    return client.ServerActions(
        instance.sdk_connection.compute, instance._api_version[API_NAME])


def build_option_parser(
        parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add no global option: OSC's compute module owns the version option."""
    return parser


def check_api_version(check_version: str) -> bool:
    """Accept any compute version; Nova validates microversions itself."""
    return True
