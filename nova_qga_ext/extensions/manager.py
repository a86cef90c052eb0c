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

"""Loads the enabled extensions; the one place API and compute share."""

from oslo_log import log as logging
import stevedore

from nova_qga_ext import conf as qga_conf
from nova_qga_ext.i18n import _

LOG = logging.getLogger(__name__)

NAMESPACE = 'nova_qga_ext.extensions'


class UnknownExtension(ValueError):
    """A name in ``[qga_ext] extensions`` has no entry point."""


def installed():
    """Return ``{name: extension class}`` for every installed extension.

    Sorted by name, so that generated samples do not depend on the order in
    which the installed distributions are found.
    """
    manager = stevedore.ExtensionManager(NAMESPACE, invoke_on_load=False)
    return {extension.name: extension.plugin
            for extension in sorted(manager, key=lambda ext: ext.name)}


def load(conf):
    """Register options and return the enabled extensions, in config order.

    :raises UnknownExtension: when an enabled name is not installed, so that
        a typo stops the service at start-up instead of silently disabling
        a feature.
    """
    qga_conf.register_opts(conf)
    names = conf.qga_ext.extensions
    available = installed()
    unknown = [name for name in names if name not in available]
    if unknown:
        raise UnknownExtension(
            _('Unknown nova-qga-ext extension(s) %(unknown)s in '
              '[qga_ext] extensions; installed extensions are: '
              '%(available)s.') % {'unknown': ', '.join(unknown),
                                   'available': ', '.join(sorted(available))})
    extensions = []
    for name in names:
        extension_class = available[name]
        qga_conf.register_opts(conf, extension_class.CONFIG_OPTS)
        extensions.append(extension_class(conf))
    LOG.info('Loaded nova-qga-ext extensions: %s', ', '.join(names))
    return extensions
