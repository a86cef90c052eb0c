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

"""Domain XML of a lab guest (TCG, direct kernel boot)."""

from xml.sax import saxutils

AGENT_CHANNEL = 'org.qemu.guest_agent.0'
# Second virtio port, read by the guest's /init: it reaches the guest when
# qemu-ga is stopped or hung (see init.sh).
CONTROL_CHANNEL = 'org.nova_qga_ext.lab.control'

_TEMPLATE = """\
<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>{memory_mb}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{kernel}</kernel>
    <initrd>{initrd}</initrd>
    <cmdline>{cmdline}</cmdline>
  </os>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
{disk}\
    <serial type='file'>
      <source path='{console_log}'/>
      <target port='0'/>
    </serial>
{channels}\
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
</domain>
"""

_DISK = """\
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='{path}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
"""

_AGENT = """\
    <channel type='unix'>
      <target type='virtio' name='%s'/>
    </channel>
""" % AGENT_CHANNEL

_CONTROL = """\
    <channel type='unix'>
      <source mode='bind' path='{path}'/>
      <target type='virtio' name='%s'/>
    </channel>
""" % CONTROL_CHANNEL


def _q(value):
    return saxutils.escape(str(value), {"'": '&apos;'})


def kernel_cmdline(block_rpcs=()):
    """Kernel command line; block_rpcs become qemu-ga's --block-rpcs."""
    # no_timer_check: under TCG on a loaded host the kernel's IO-APIC timer
    # check can miss its ticks and panic ("IO-APIC + timer doesn't work!").
    cmdline = 'console=ttyS0 panic=-1 quiet no_timer_check'
    if block_rpcs:
        cmdline += ' qga.block=' + ','.join(block_rpcs)
    return cmdline


def domain_xml(name, kernel, initrd, console_log, *, disk=None, agent=True,
               block_rpcs=(), control_socket=None, memory_mb=256):
    """XML for a transient TCG domain booting the lab kernel and initrd.

    disk: qcow2 file attached as vda (mounted on /data in the guest), or
    None. agent False leaves out the guest agent channel altogether, the
    way a domain looks when nobody configured an agent.
    """
    channels = _AGENT if agent else ''
    if control_socket:
        channels += _CONTROL.format(path=_q(control_socket))
    return _TEMPLATE.format(
        name=_q(name), memory_mb=int(memory_mb), kernel=_q(kernel),
        initrd=_q(initrd), cmdline=_q(kernel_cmdline(block_rpcs)),
        disk=_DISK.format(path=_q(disk)) if disk else '',
        console_log=_q(console_log), channels=channels)
