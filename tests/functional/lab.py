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

"""Fixtures for functional tests that use the real-guest lab.

The lab (libvirtd, guest image) is shared by the whole test process and
torn down at exit; libvirtd is stopped then only if this process started
it (tools/run-tests.sh brings it up once for all test processes).
"""

import atexit
import os
import uuid

import fixtures
import libvirt

from nova_qga_ext import lab as qga_lab

_state = {}


def shared_lab():
    """The process-wide Lab, with the guest built and libvirtd up."""
    lab = _state.get('lab')
    if lab is None:
        lab = qga_lab.Lab()
        lab.build_guest()
        lab.start_libvirtd()
        atexit.register(lab.teardown)
        _state['lab'] = lab
    return lab


def unique_name(prefix):
    """A domain name no other test or test process uses."""
    return '%s-%d-%s' % (prefix, os.getpid(), uuid.uuid4().hex[:6])


def booted_here(name):
    """Whether a domain named by unique_name() belongs to this process."""
    return '-%d-' % os.getpid() in name


def shared_guest():
    """One process-wide guest for tests that leave it as they found it.

    Booted on first use and rebooted if it stopped or its agent no longer
    answers (a failed fault-injection test can leave it so).
    """
    lab = shared_lab()
    guest = _state.get('guest')
    if guest is not None:
        try:
            guest.ping(timeout=2)
            return guest
        except libvirt.libvirtError:
            lab.destroy(guest)
    guest = lab.boot(unique_name('shared'))
    _state['guest'] = guest
    return guest


class LabGuestFixture(fixtures.Fixture):
    """Boots a lab guest of its own; destroys it on cleanup.

    boot_kwargs go to Lab.boot (agent, block_rpcs, data_disk_mb, ...).
    """

    def __init__(self, name_prefix='guest', **boot_kwargs):
        super().__init__()
        self.name_prefix = name_prefix
        self.boot_kwargs = boot_kwargs
        self.lab = None
        self.guest = None

    def _setUp(self):
        self.lab = shared_lab()
        self.guest = self.lab.boot(unique_name(self.name_prefix),
                                   **self.boot_kwargs)
        self.addCleanup(self.lab.destroy, self.guest)
