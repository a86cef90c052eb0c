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

"""Argument helpers shared by the plugin's commands."""

from __future__ import annotations

import argparse
from typing import Any

from nova_qga_ext.i18n import _


class Secret(str):
    """A command-line value that must not reach any log.

    osc-lib logs every command's parsed arguments at debug level
    (``--debug``); this keeps passwords and environment values out of it.
    """

    def __repr__(self) -> str:
        return "'******'"


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        'server',
        metavar='<server>',
        help=_('Server (name or ID)'),
    )
    parser.add_argument(
        '--all-projects',
        action='store_true',
        help=_('Look the server name up in all projects (admin only)'),
    )


def find_server(actions: Any, parsed_args: argparse.Namespace) -> Any:
    """The server named by the arguments of :func:`add_server_arguments`."""
    return actions.find_server(parsed_args.server,
                               all_projects=parsed_args.all_projects)
