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

"""The ``[qga_ext]`` section of nova.conf.

The core options live here; every extension declares its own options next
to its code (``Extension.CONFIG_OPTS``) and they are registered into the same
group when the extension is loaded.
"""

import copy

from oslo_config import cfg

GROUP = cfg.OptGroup(
    'qga_ext',
    title='QEMU guest agent extensions',
    help='Options for nova-qga-ext, which adds per-user passwords, guest '
         'exec and quiesced snapshots to the libvirt driver through the '
         'QEMU guest agent.')

CORE_OPTS = [
    cfg.ListOpt(
        'extensions',
        default=['user_password', 'guest_exec', 'quiesced_snapshot'],
        help='Names of the extensions to enable, from the entry point '
             'namespace "nova_qga_ext.extensions". Set the same list on API '
             'and compute nodes. An extension that is not listed is neither '
             'loaded nor reachable through the API: its actions are left '
             'to nova, which rejects them with 400. An unknown name stops '
             'the service at start-up.'),
    cfg.IntOpt(
        'agent_timeout',
        default=10,
        min=1,
        help='Seconds to wait for the guest agent to answer one command. '
             'This also becomes the libvirt agent response timeout of the '
             'domain, so that no agent call, including nova\'s own, can '
             'block forever on a hung agent.'),
]


def register_opts(conf, opts=CORE_OPTS):
    # oslo.config keeps a shallow copy of a registered group, which shares
    # its option dict: registering GROUP itself would collect in it the
    # options of every ConfigOpts, and pass them on to the next one.
    conf.register_group(cfg.OptGroup(GROUP.name, title=GROUP.title,
                                     help=GROUP.help))
    conf.register_opts(opts, group=GROUP)


def list_opts():
    """Options for oslo-config-generator, extensions' options included.

    Every installed extension is listed, enabled or not, so that the sample
    documents all of them.
    """
    # Imported here: the manager imports this module.
    from nova_qga_ext.extensions import manager

    opts = list(CORE_OPTS)
    for extension_class in manager.installed().values():
        opts.extend(extension_class.CONFIG_OPTS)
    return [(GROUP, copy.deepcopy(opts))]
