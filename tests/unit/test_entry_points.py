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

"""The entry points load for real, through the loaders that use them.

These tests need the project installed (``pip install .``): nova, paste,
oslo.config, oslo.policy and stevedore find the plugin only through its
installed metadata.
"""

import configparser
import importlib
from importlib import metadata
import os

import fixtures
from oslo_config import cfg
from oslo_config import fixture as config_fixture
from oslo_config import generator as config_generator
from oslo_policy import generator as policy_generator
from oslo_policy import policy
from paste import deploy
import stevedore
from stevedore import driver as stevedore_driver
import testtools

from nova_qga_ext.api import filter as api_filter
from nova_qga_ext import conf as qga_conf
from nova_qga_ext.extensions import base
from nova_qga_ext.extensions import manager
from nova_qga_ext import policies
from nova_qga_ext.virt import driver as virt_driver

SETUP_CFG = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir,
                         'setup.cfg')
DISTRIBUTION = 'nova-qga-ext'
GROUPS = ('nova_qga_ext.extensions', 'paste.filter_factory',
          'oslo.config.opts', 'oslo.policy.policies', 'oslo.policy.enforcer',
          'console_scripts')
FEATURES = ('user_password', 'guest_exec', 'quiesced_snapshot')


def setup_cfg_entry_points(group):
    config = configparser.ConfigParser()
    config.read(SETUP_CFG)
    lines = config['entry_points'][group].strip().splitlines()
    return dict(tuple(part.strip() for part in line.split('=', 1))
                for line in lines)


def _raise(manager, entry_point, error):
    raise error


def load(group, name):
    return stevedore_driver.DriverManager(
        group, name, invoke_on_load=False,
        on_load_failure_callback=_raise).driver


class TestEntryPoints(testtools.TestCase):

    def setUp(self):
        super().setUp()
        try:
            self.distribution = metadata.distribution(DISTRIBUTION)
        except metadata.PackageNotFoundError:
            self.fail('nova-qga-ext is not installed; run "pip install ."')

    def test_installed_metadata_is_setup_cfg(self):
        for group in GROUPS:
            installed = {ep.name: ep.value
                         for ep in self.distribution.entry_points
                         if ep.group == group}
            self.assertEqual(
                setup_cfg_entry_points(group), installed,
                'entry points %s differ from setup.cfg: reinstall the '
                'project (pip install .)' % group)

    def test_paste_filter(self):
        self.assertIs(api_filter.filter_factory,
                      load('paste.filter_factory', 'qga_ext'))

    def test_paste_deploy_egg_uri(self):
        # What operators write in api-paste.ini: use = egg:nova-qga-ext#...
        conf = self.useFixture(config_fixture.Config(cfg.CONF)).conf
        qga_conf.register_opts(conf)
        conf.set_override('extensions', [], group='qga_ext')

        def app(environ, start_response):
            start_response('200 OK', [])
            return [b'nova']

        wrapped = deploy.loadfilter('egg:nova-qga-ext#qga_ext')(app)
        self.assertIsInstance(wrapped, api_filter.ServerActionFilter)
        self.assertIs(app, wrapped.application)

    def test_config_opts(self):
        self.assertIs(qga_conf.list_opts,
                      load('oslo.config.opts', 'nova_qga_ext'))
        # As oslo-config-generator --namespace nova_qga_ext lists them.
        (namespace, groups), = config_generator._list_opts(['nova_qga_ext'])
        self.assertEqual('nova_qga_ext', namespace)
        (group, opts), = groups
        self.assertEqual('qga_ext', group.name)
        names = [opt.name for opt in opts]
        self.assertEqual(len(names), len(set(names)), names)
        expected = {'extensions', 'agent_timeout'}
        for extension_class in manager.installed().values():
            expected.update(opt.name for opt in extension_class.CONFIG_OPTS)
        self.assertEqual(expected, set(names))

    def test_policies(self):
        self.assertIs(policies.list_rules,
                      load('oslo.policy.policies', 'nova_qga_ext'))
        # As oslopolicy-sample-generator --namespace nova_qga_ext sees them.
        rules = policy_generator.get_policies_dict(
            ['nova_qga_ext'])['nova_qga_ext']
        names = [rule.name for rule in rules]
        self.assertEqual(len(names), len(set(names)), names)
        for rule in rules:
            self.assertIsInstance(rule, policy.DocumentedRuleDefault)
            self.assertTrue(rule.name.startswith(policies.RULE_PREFIX),
                            rule.name)
            self.assertEqual(['project'], rule.scope_types, rule.name)

    def test_policy_enforcer(self):
        self.assertIs(policies.get_enforcer,
                      load('oslo.policy.enforcer', 'nova_qga_ext'))
        enforcer = policy.Enforcer(cfg.ConfigOpts())
        self.useFixture(fixtures.MockPatch(
            'nova.policy.get_enforcer', return_value=enforcer))
        self.assertIs(enforcer, policies.get_enforcer())
        # Again, as after nova.policy.reset(): no duplicate registration.
        self.assertIs(enforcer, policies.get_enforcer())
        self.assertEqual(
            {rule.name for rule in policies.list_rules()},
            set(enforcer.registered_rules))

    def test_extensions(self):
        extensions = stevedore.ExtensionManager(
            manager.NAMESPACE, on_load_failure_callback=_raise)
        self.assertEqual(sorted(FEATURES), sorted(extensions.names()))
        actions = {}
        for extension in extensions:
            self.assertTrue(issubclass(extension.plugin, base.Extension))
            self.assertEqual(extension.name, extension.plugin.name)
            controller = extension.plugin.API_CONTROLLER
            for action in getattr(controller, 'wsgi_actions', {}):
                self.assertNotIn(action, actions,
                                 'two extensions define %s' % action)
                actions[action] = extension.name
        self.assertEqual(sorted(FEATURES), sorted(manager.installed()))

    def test_compute_driver_shim(self):
        # compute_driver = qga_ext.LibvirtDriver resolves to our class.
        shim = importlib.import_module('nova.virt.qga_ext')
        self.assertIs(virt_driver.LibvirtDriver, shim.LibvirtDriver)
        # The wheel adds the shim to nova's namespace, nothing else of it.
        nova_files = {str(path) for path in self.distribution.files
                      if str(path).startswith('nova/')}
        self.assertEqual({'nova/virt/qga_ext/__init__.py'},
                         {path for path in nova_files
                          if path.endswith('.py')})

    def test_console_script(self):
        main = load('console_scripts', 'nova-qga-ext-lab')
        self.assertTrue(callable(main))
        self.assertEqual('nova_qga_ext.lab.cli', main.__module__)
