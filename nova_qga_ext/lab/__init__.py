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

"""Real-guest lab: libvirtd + TCG guests running the real qemu-ga.

See nova_qga_ext/lab/core.py; ``nova-qga-ext-lab`` is its command line.
"""

from nova_qga_ext.lab.core import DOMAIN_PREFIX
from nova_qga_ext.lab.core import Lab
from nova_qga_ext.lab.guest import LabError
from nova_qga_ext.lab.guest import LabGuest
from nova_qga_ext.lab.guest import password_matches
from nova_qga_ext.lab.image import GuestImage
from nova_qga_ext.lab.image import INITIAL_PASSWORD

__all__ = ['DOMAIN_PREFIX', 'GuestImage', 'INITIAL_PASSWORD', 'Lab',
           'LabError', 'LabGuest', 'password_matches']
