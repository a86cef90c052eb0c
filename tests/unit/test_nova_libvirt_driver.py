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

"""Nova's own LibvirtDriver tests, run against our subclass.

The set_admin_password and snapshot tests of nova's libvirt driver suite
must still pass with ``qga_ext.LibvirtDriver`` in place and every extension
enabled: the extensions may only add behaviour, never change nova's.
"""

import re

import fixtures
from nova.tests.unit.virt.libvirt import test_driver as nova_tests
from oslo_config import cfg

from nova_qga_ext import conf as qga_conf
from nova_qga_ext.virt import driver

_SELECTED = re.compile(r'^test_(?!migrate)('
                       r'.*set_admin_password.*|.*quiesce.*|'
                       r'snapshot.*|.*_snapshot)$')


class _WithQgaExtDriver:
    """Swaps nova's driver class for ours, with all extensions enabled."""

    def setUp(self):
        super().setUp()
        qga_conf.register_opts(cfg.CONF)
        self.flags(extensions=['user_password', 'guest_exec',
                               'quiesced_snapshot'], group='qga_ext')
        self.useFixture(fixtures.MockPatch(
            'nova.virt.libvirt.driver.LibvirtDriver', driver.LibvirtDriver))


class LibvirtConnTestCase(_WithQgaExtDriver,
                          nova_tests.LibvirtConnTestCase):
    pass


class LibvirtDriverTestCase(_WithQgaExtDriver,
                            nova_tests.LibvirtDriverTestCase):
    pass


class LibvirtSnapshotTests(_WithQgaExtDriver,
                           nova_tests.LibvirtSnapshotTests):
    pass


def load_tests(loader, tests, pattern):
    suite = loader.suiteClass()
    for test_class in (LibvirtConnTestCase, LibvirtDriverTestCase,
                       LibvirtSnapshotTests):
        for name in loader.getTestCaseNames(test_class):
            if (test_class is LibvirtSnapshotTests or
                    _SELECTED.match(name)):
                suite.addTest(test_class(name))
    return suite
