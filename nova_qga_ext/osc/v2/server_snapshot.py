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

"""``openstack server snapshot create``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
import time
from typing import Any

from openstack import exceptions as sdk_exceptions
from osc_lib.cli import parseractions
from osc_lib.command import command
from osc_lib import exceptions

from nova_qga_ext.i18n import _
from nova_qga_ext.osc import client
from nova_qga_ext.osc.v2 import common

# Image properties the compute side sets on the snapshot. Their names are
# part of the plugin's interface.
FREEZE_WINDOW_PROPERTY = 'qga_ext_freeze_window_ms'
FROZEN_FILESYSTEMS_PROPERTY = 'qga_ext_frozen_filesystems'

# Glance states after which an image never becomes active.
_FAILED_STATES = frozenset(
    ['killed', 'deleted', 'pending_delete', 'deactivated'])


class CreateServerSnapshot(command.ShowOne):
    _description = _(
        "Create an image of a server while its filesystems are frozen "
        "through the QEMU guest agent. Unlike \"openstack server image "
        "create\", it fails instead of taking an unfrozen snapshot.")

    # Seconds between two looks at the image with --wait.
    poll_interval = 2.0

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        common.add_server_arguments(parser)
        parser.add_argument(
            '--name',
            metavar='<image>',
            required=True,
            help=_('Name of the new image'),
        )
        parser.add_argument(
            '--property',
            metavar='<key=value>',
            dest='properties',
            action=parseractions.KeyValueAction,
            default={},
            help=_('Property for the new image (repeat option to set '
                   'several)'),
        )
        parser.add_argument(
            '--wait',
            action='store_true',
            help=_('Wait until the image is active, showing its progress on '
                   'stderr, then show how long the filesystems were frozen'),
        )
        return parser

    def take_action(
            self, parsed_args: argparse.Namespace
    ) -> tuple[Sequence[str], Sequence[Any]]:
        actions = self.app.client_manager.qga_ext
        server = common.find_server(actions, parsed_args)
        reply = actions.act(server, 'quiescedSnapshot', {
            'name': parsed_args.name, 'metadata': parsed_args.properties})
        info = {'id': reply['image_id'], 'name': parsed_args.name,
                'server': server.id}
        if parsed_args.wait:
            image = self._wait_for_active(reply['image_id'], server.id)
            properties = image.properties or {}
            info.update({
                'status': image.status,
                'freeze_window_ms': properties.get(FREEZE_WINDOW_PROPERTY),
                'frozen_filesystems': properties.get(
                    FROZEN_FILESYSTEMS_PROPERTY),
            })
        return tuple(info), tuple(info.values())

    def _wait_for_active(self, image_id: str, server_id: str) -> Any:
        images = self.app.client_manager.image
        started = time.monotonic()
        last_status = None
        while True:
            try:
                image = images.get_image(image_id)
            except sdk_exceptions.NotFoundException:
                raise exceptions.CommandError(
                    _('Snapshot %(image)s of server %(server)s failed: Nova '
                      'deleted the image. See "openstack server event list '
                      '%(server)s".') % {
                        'image': image_id, 'server': server_id})
            except sdk_exceptions.SDKException as exc:
                raise client.command_error(
                    exc, _('Waiting for image %s') % image_id)
            status = (image.status or '').lower()
            if status != last_status:
                last_status = status
                self.app.stderr.write(
                    _('Image %(image)s: %(status)s after %(seconds).0f s\n')
                    % {'image': image_id, 'status': status,
                       'seconds': time.monotonic() - started})
            if status == 'active':
                return image
            if status in _FAILED_STATES:
                raise exceptions.CommandError(
                    _('Snapshot %(image)s of server %(server)s failed: the '
                      'image is %(status)s') % {
                        'image': image_id, 'server': server_id,
                        'status': status})
            time.sleep(self.poll_interval)
