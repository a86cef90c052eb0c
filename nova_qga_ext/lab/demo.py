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

"""Walkthrough of the guest-agent features on one lab guest.

Each step goes through the project's agent client (nova_qga_ext.agent) and
is then checked inside the guest through the lab's own raw agent path.
"""

import secrets
import time

from nova_qga_ext import agent as qga_agent
from nova_qga_ext.lab import guest as lab_guest


def _step(report, label, func):
    started = time.monotonic()
    result = func()
    report.append((label, time.monotonic() - started))
    return result


def run(lab, out=print):
    """Boot a guest, change alice's password, exec, freeze/thaw; tear down.

    Returns 0 if every check in the guest passed.
    """
    report = []
    failures = []

    def check(ok, what):
        out('  %s %s' % ('ok  ' if ok else 'FAIL', what))
        if not ok:
            failures.append(what)

    _step(report, 'guest build', lab.build_guest)
    _step(report, 'libvirtd', lab.start_libvirtd)
    started_libvirtd = lab.started_libvirtd
    guest = lab.boot('demo')
    report.append(('boot to agent', guest.boot_seconds))
    try:
        versions = lab.versions()
        out('guest %s booted (TCG) in %.1f s: libvirt %s, QEMU %s, '
            'qemu-ga %s' % (guest.name, guest.boot_seconds,
                            versions['libvirt'], versions['qemu'],
                            versions['qemu-ga']))
        client = qga_agent.GuestAgent(guest.domain)

        out('1. set alice\'s password')
        before = guest.read_shadow_hash('alice')
        # Random and never printed: the demo shows no secret.
        password = secrets.token_urlsafe(12)
        _step(report, 'set password',
              lambda: client.set_user_password('alice', password))
        after = guest.read_shadow_hash('alice')
        check(after != before, 'shadow hash changed (%s... -> %s...)'
              % (before[:4], after[:7]))
        check(lab_guest.password_matches(password, after),
              'new hash checks against the new password')

        out('2. exec uname -a')
        result = _step(report, 'exec',
                       lambda: client.exec_run(['uname', '-a']))
        out('  stdout: %s' % result.stdout.decode(errors='replace').strip())
        check(result.exited and result.exitcode == 0 and
              b'Linux' in result.stdout, 'exit code 0, Linux kernel')

        out('3. freeze and thaw')
        guest.check_shell('echo demo > /data/demo.txt')
        frozen = _step(report, 'freeze', client.fs_freeze)
        status = guest.agent_command('guest-fsfreeze-status')
        check(frozen >= 1 and status == 'frozen',
              '%d filesystem(s) frozen, status %s' % (frozen, status))
        thawed = _step(report, 'thaw', client.fs_thaw)
        status = guest.agent_command('guest-fsfreeze-status')
        check(thawed >= 1 and status == 'thawed',
              '%d filesystem(s) thawed, status %s' % (thawed, status))
        check(guest.check_shell('cat /data/demo.txt') == b'demo\n',
              '/data readable and writable after thaw')
    except qga_agent.AgentError as e:
        failures.append(e.format_message())
        out('  FAIL %s' % e.format_message())
    finally:
        lab.destroy(guest)
        if started_libvirtd:
            lab.teardown()

    out('report: ' + ', '.join('%s %.2f s' % item for item in report))
    out('demo %s' % ('passed' if not failures else
                     'FAILED: %s' % '; '.join(failures)))
    return 1 if failures else 0
