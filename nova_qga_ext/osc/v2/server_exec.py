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

"""``openstack server exec`` and ``openstack server exec status``.

Without ``-f`` both commands stand in for the guest process, as ``ssh`` and
``kubectl exec`` do: its stdout and stderr bytes go to the local stdout and
stderr, and the CLI exits with its status. Exit status:

- the guest command's exit code, or 128 + N if signal N killed it;
- 1 for a guest exit code outside 0-255 (Windows), so that a failure never
  reads as success;
- ``EXIT_STILL_RUNNING`` (124, as timeout(1)) if the command had not ended
  when the server stopped waiting; its pid is printed;
- 1 if the request failed (the message on stderr says why), 2 for a usage
  error.
With ``-f json`` (or any other format) the structured result is printed
instead, and the exit status is the same.
"""

from __future__ import annotations

import abc
import argparse
import base64
from collections.abc import Sequence
import os
import sys
from typing import Any

from cliff import columns
from osc_lib.command import command

from nova_qga_ext.i18n import _
from nova_qga_ext.osc.v2 import common

EXIT_STILL_RUNNING = 124

_RESULT_COLUMNS = ('server', 'pid', 'exited', 'exitcode', 'signal',
                   'stdout', 'stderr', 'stdout_truncated', 'stderr_truncated')


class GuestOutput(columns.FormattableColumn[bytes]):
    """Guest output bytes; formatters get text, raw mode the bytes."""

    @property
    def data(self) -> bytes:
        return self._value

    def human_readable(self) -> str:
        return self._value.decode('utf-8', 'backslashreplace')

    def machine_readable(self) -> str:
        return self.human_readable()


def exit_status(result: dict[str, Any]) -> int:
    """The local exit status that stands for a guest process result."""
    if 'exited' not in result:
        # --no-wait: the process was started, nothing more is known.
        return 0
    if not result['exited']:
        return EXIT_STILL_RUNNING
    if result['signal'] is not None:
        return 128 + result['signal']
    code = result['exitcode']
    return code if 0 <= code <= 255 else 1


class _VerbatimTail:
    """Parser mixin: everything after the first ``--`` is the guest argv.

    argparse (Python 3.11 at least) also drops a second ``--``, which would
    run ``grep -- -v file`` as ``grep -v file`` in the guest.
    """

    def parse_known_args(
            self, args: Sequence[str] | None = None,
            namespace: argparse.Namespace | None = None,
    ) -> tuple[argparse.Namespace, list[str]]:
        args = sys.argv[1:] if args is None else list(args)
        if '--' in args:
            split = args.index('--')
            args, tail = args[:split], args[split + 1:]
        else:
            tail = []
        namespace, extras = super().parse_known_args(args, namespace)
        namespace.command = [*namespace.command, *tail]
        if not namespace.command:
            self.error(_('the guest command is missing; give it after "--"'))
        return namespace, extras


class _GuestProcessCommand(command.ShowOne):
    """Shows a guest process result the way the process itself would."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        # No -f means raw output; cliff's "table" default would hide the
        # difference between "asked for a table" and "asked for nothing".
        # argparse offers no public way to reach an added argument.
        for action in parser._actions:
            if action.dest == 'formatter':
                action.default = None
                action.help = _('the output format; without it, the guest '
                                'command\'s own output')
        common.add_server_arguments(parser)
        return parser

    @abc.abstractmethod
    def request(self, parsed_args: argparse.Namespace,
                server: Any) -> dict[str, Any]:
        """Send the action; return the ``guestExec`` object of the reply."""

    def take_action(
            self, parsed_args: argparse.Namespace
    ) -> tuple[Sequence[str], Sequence[Any]]:
        actions = self.app.client_manager.qga_ext
        server = common.find_server(actions, parsed_args)
        result = {'server': server.id, **self.request(parsed_args, server)}
        names = [name for name in _RESULT_COLUMNS if name in result]
        values = [GuestOutput(base64.b64decode(result[name]))
                  if name in ('stdout', 'stderr') else result[name]
                  for name in names]
        return names, values

    def run(self, parsed_args: argparse.Namespace) -> int:
        # cliff's ShowOne.run() always returns 0 and needs a formatter; here
        # the exit status is the guest's and raw mode has no formatter.
        parsed_args = self._run_before_hooks(parsed_args)
        names, values = self.take_action(parsed_args)
        names, values = self._run_after_hooks(parsed_args, (names, values))
        result = dict(zip(names, values))
        status = exit_status(result)
        if parsed_args.formatter is None:
            self._write_raw(result)
        else:
            self.formatter = self._formatter_plugins[
                parsed_args.formatter].obj
            self.produce_output(parsed_args, names, values)
        if status == EXIT_STILL_RUNNING:
            self.app.stderr.write(
                _('The command is still running in the guest (pid '
                  '%(pid)s). Check on it with: openstack server exec status '
                  '%(server)s %(pid)s\n') % result)
        return status

    def _write_raw(self, result: dict[str, Any]) -> None:
        if not result.get('exited'):
            # Started with --no-wait, or still running: the pid is all
            # there is.
            self.app.stdout.write('%s\n' % result['pid'])
            return
        for stream, name in ((self.app.stdout, 'stdout'),
                             (self.app.stderr, 'stderr')):
            stream.buffer.write(result[name].data)
            stream.buffer.flush()
        for name in ('stdout', 'stderr'):
            if result['%s_truncated' % name]:
                self.app.stderr.write(
                    _('Warning: the guest command\'s %s was cut at the '
                      'server\'s output limit\n') % name)


class ExecServer(_GuestProcessCommand):
    _description = _(
        "Run a command inside a server through the QEMU guest agent and "
        "exit with its exit status. Put the command after \"--\". A server "
        "whose name is \"status\" or a prefix of it (\"s\", \"st\", ...) "
        "must be given after an option or \"--\" (or by ID), because "
        "\"openstack server exec status\" would match first.")

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.__class__ = type(
            'GuestExecArgumentParser', (_VerbatimTail, type(parser)), {})
        wait = parser.add_mutually_exclusive_group()
        wait.add_argument(
            '--timeout',
            metavar='<seconds>',
            type=_positive_int,
            help=_('Wait this long for the command to end (default: the '
                   'server\'s); if it is still running then, print its pid '
                   'and exit with %d') % EXIT_STILL_RUNNING,
        )
        wait.add_argument(
            '--no-wait',
            action='store_true',
            help=_('Start the command, print its pid and return at once'),
        )
        parser.add_argument(
            '--env',
            metavar='<NAME=value>',
            action='append',
            type=_env_var,
            default=[],
            help=_('Environment variable for the command (repeat option to '
                   'set several). A bare NAME passes the local value, which '
                   'keeps it out of the process list and of "--debug" '
                   'output'),
        )
        parser.add_argument(
            '--stdin',
            action='store_true',
            help=_('Read all of standard input and give it to the command '
                   'as its standard input'),
        )
        parser.add_argument(
            'command',
            metavar='<command>',
            nargs='*',
            help=_('The command and its arguments, after "--"'),
        )
        return parser

    def request(self, parsed_args: argparse.Namespace,
                server: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            'command': parsed_args.command,
            'wait': not parsed_args.no_wait,
        }
        if parsed_args.timeout is not None:
            body['timeout'] = parsed_args.timeout
        if parsed_args.env:
            body['env'] = [str(var) for var in parsed_args.env]
        if parsed_args.stdin:
            data = self.app.stdin.buffer.read()
            body['input'] = base64.b64encode(data).decode('ascii')
        reply = self.app.client_manager.qga_ext.act(
            server, 'guestExec', body,
            secret=bool(parsed_args.env or parsed_args.stdin))
        return reply['guestExec']


class ShowServerExecStatus(_GuestProcessCommand):
    _description = _(
        "Show a command started by \"openstack server exec\" the way that "
        "command would have: its output and exit status once it has "
        "ended, or its pid and exit status %d while it is running. The "
        "guest agent forgets a process once its result has been read; "
        "Nova keeps the result for a while.") % EXIT_STILL_RUNNING

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument(
            'pid',
            metavar='<pid>',
            type=_positive_int,
            help=_('Process ID printed by "openstack server exec"'),
        )
        return parser

    def request(self, parsed_args: argparse.Namespace,
                server: Any) -> dict[str, Any]:
        reply = self.app.client_manager.qga_ext.act(
            server, 'guestExecStatus', {'pid': parsed_args.pid})
        return reply['guestExecStatus']


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(
            _('%s is not a positive integer') % value)
    return number


def _env_var(value: str) -> common.Secret:
    name, sep, _rest = value.partition('=')
    if not name:
        # The value may be a secret; repeat nothing of it.
        raise argparse.ArgumentTypeError(_('expected NAME=value or NAME'))
    if not sep:
        if name not in os.environ:
            raise argparse.ArgumentTypeError(
                _('%s is not set in the local environment') % name)
        value = '%s=%s' % (name, os.environ[name])
    return common.Secret(value)
