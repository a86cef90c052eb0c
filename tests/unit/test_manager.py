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

"""Loading of the extensions named in ``[qga_ext] extensions``."""

from unittest import mock

import fixtures
from oslo_config import cfg
from oslo_config import fixture as config_fixture
import stevedore
from stevedore import extension as stevedore_extension
import testtools

from nova_qga_ext import conf as qga_conf
from nova_qga_ext.extensions import base
from nova_qga_ext.extensions import manager


class Alpha(base.Extension):
    name = 'alpha'
    CONFIG_OPTS = [cfg.IntOpt('alpha_limit', default=3)]


class Beta(base.Extension):
    name = 'beta'
    CONFIG_OPTS = [cfg.StrOpt('beta_mode', default='fast')]


def fake_stevedore(*classes):
    """A stevedore ExtensionManager that found these plugins."""
    extensions = [stevedore_extension.Extension(
        plugin.name, mock.Mock(), plugin, None) for plugin in classes]
    return stevedore.ExtensionManager.make_test_instance(
        extensions, namespace=manager.NAMESPACE)


class TestManager(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.conf = self.useFixture(config_fixture.Config(
            cfg.ConfigOpts())).conf
        self.stevedore = self.useFixture(fixtures.MockPatch(
            'stevedore.ExtensionManager',
            return_value=fake_stevedore(Alpha, Beta))).mock

    def _enable(self, *names):
        qga_conf.register_opts(self.conf)
        self.conf.set_override('extensions', list(names), group='qga_ext')

    def test_installed(self):
        self.assertEqual({'alpha': Alpha, 'beta': Beta}, manager.installed())
        self.stevedore.assert_called_once_with(manager.NAMESPACE,
                                               invoke_on_load=False)

    def test_loads_enabled_in_config_order(self):
        self._enable('beta', 'alpha')
        loaded = manager.load(self.conf)
        self.assertEqual([Beta, Alpha], [type(ext) for ext in loaded])
        for extension in loaded:
            self.assertIs(self.conf, extension.conf)

    def test_only_enabled_loaded_and_configured(self):
        self._enable('alpha')
        loaded = manager.load(self.conf)
        self.assertEqual(['alpha'], [ext.name for ext in loaded])
        self.assertEqual(3, self.conf.qga_ext.alpha_limit)
        self.assertRaises(cfg.NoSuchOptError, getattr, self.conf.qga_ext,
                          'beta_mode')

    def test_none_enabled(self):
        self._enable()
        self.assertEqual([], manager.load(self.conf))

    def test_registers_core_options(self):
        # load() works on a ConfigOpts nobody prepared, as paste's factory
        # and the driver get it: it reads the default extension list.
        error = self.assertRaises(manager.UnknownExtension, manager.load,
                                  self.conf)
        self.assertIn(', '.join(qga_conf.CORE_OPTS[0].default), str(error))
        self.assertEqual(10, self.conf.qga_ext.agent_timeout)

    def test_load_twice(self):
        # API and compute in one process (tests, all-in-one) both load.
        self._enable('alpha', 'beta')
        manager.load(self.conf)
        self.assertEqual(2, len(manager.load(self.conf)))

    def test_unknown_extension(self):
        self._enable('alpha', 'gamma', 'delta')
        error = self.assertRaises(manager.UnknownExtension, manager.load,
                                  self.conf)
        message = str(error)
        self.assertIn('gamma, delta', message)
        self.assertIn('[qga_ext] extensions', message)
        self.assertIn('alpha, beta', message)
        self.assertIsInstance(error, ValueError)

    def test_list_opts_documents_every_installed_extension(self):
        (group, opts), = qga_conf.list_opts()
        self.assertEqual('qga_ext', group.name)
        self.assertEqual(['extensions', 'agent_timeout', 'alpha_limit',
                          'beta_mode'], [opt.name for opt in opts])
        # Copies: the generator may not alter the registered options.
        self.assertIsNot(Alpha.CONFIG_OPTS[0], opts[2])
