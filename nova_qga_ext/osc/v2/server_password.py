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

"""``openstack server user password set``."""

from __future__ import annotations

import argparse
import getpass

from osc_lib.command import command
from osc_lib import exceptions

from nova_qga_ext.i18n import _
from nova_qga_ext.osc.v2 import common


class SetServerUserPassword(command.Command):
    _description = _(
        "Set the password of a user inside a server through the QEMU guest "
        "agent. The password is read from --password, from standard input "
        "with --password-stdin, or else asked for twice on the terminal.")

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        common.add_server_arguments(parser)
        parser.add_argument(
            'user',
            metavar='<user>',
            help=_('User inside the guest whose password to set'),
        )
        source = parser.add_mutually_exclusive_group()
        source.add_argument(
            '--password',
            metavar='<password>',
            type=common.Secret,
            help=_('The new password (visible in the process list; prefer '
                   '--password-stdin or the prompt)'),
        )
        source.add_argument(
            '--password-stdin',
            action='store_true',
            help=_('Read the new password from standard input (one line; '
                   'the trailing newline is dropped)'),
        )
        parser.add_argument(
            '--crypted',
            action='store_true',
            help=_('The password is already hashed in the guest\'s crypt(3) '
                   'format (e.g. from "openssl passwd -6")'),
        )
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> None:
        password = self._read_password(parsed_args)
        actions = self.app.client_manager.qga_ext
        server = common.find_server(actions, parsed_args)
        body = {'adminPass': password, 'userName': parsed_args.user}
        if parsed_args.crypted:
            body['crypted'] = True
        actions.act(server, 'changePassword', body, secret=True)

    def _read_password(self, parsed_args: argparse.Namespace) -> str:
        if parsed_args.password is not None:
            password = str(parsed_args.password)
        elif parsed_args.password_stdin:
            password = self.app.stdin.read()
            # One trailing newline is how "echo" and files end the line;
            # anything beyond that is part of no sensible password.
            password = password.removesuffix('\n').removesuffix('\r')
            if '\n' in password or '\r' in password:
                raise exceptions.CommandError(
                    _('The password read from standard input must be a '
                      'single line'))
        elif self.app.stdin.isatty():
            password = self._prompt(parsed_args.user)
        else:
            raise exceptions.CommandError(
                _('No password given and standard input is not a terminal; '
                  'use --password-stdin or --password'))
        if not password:
            raise exceptions.CommandError(_('The password must not be empty'))
        return password

    @staticmethod
    def _prompt(user: str) -> str:
        try:
            first = getpass.getpass(_('New password for %s: ') % user)
            second = getpass.getpass(_('Retype new password for %s: ') % user)
        except EOFError:
            raise exceptions.CommandError(_('No password entered'))
        if first != second:
            raise exceptions.CommandError(
                _('The passwords do not match; password unchanged'))
        return first
