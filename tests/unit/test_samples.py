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

"""The samples in etc/ are generated; these tests fail when they are stale.

Regenerate them with ``tox -e genconfig`` and ``tox -e genpolicy``.
"""

import os

import fixtures
from oslo_config import cfg
from oslo_config import generator as config_generator
from oslo_policy import generator as policy_generator
import testtools

ETC = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, 'etc')


def _read(path):
    with open(path) as f:
        return f.read()


class TestSamples(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.output = os.path.join(
            self.useFixture(fixtures.TempDir()).path, 'sample')

    def test_config_sample_is_current(self):
        config_generator.main(args=[
            '--namespace', 'nova_qga_ext', '--wrap-width', '79',
            '--output-file', self.output])
        self.assertEqual(
            _read(os.path.join(ETC, 'nova-qga-ext.conf.sample')),
            _read(self.output),
            'etc/nova-qga-ext.conf.sample is stale: run tox -e genconfig')

    def test_policy_sample_is_current(self):
        # Its own ConfigOpts: by default the generator parses the global
        # CONF, which breaks every later nova test in the same process.
        policy_generator.generate_sample(args=[
            '--namespace', 'nova_qga_ext', '--output-file', self.output],
            conf=cfg.ConfigOpts())
        self.assertEqual(
            _read(os.path.join(ETC, 'policy.yaml.sample')),
            _read(self.output),
            'etc/policy.yaml.sample is stale: run tox -e genpolicy')
