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

"""Policy rules of the extensions, for the generators and for nova.

Nova's enforcer registers only nova's own rules, and raises for a rule it
does not know; the extensions' rules are registered into it on first use,
and again whenever nova rebuilds the enforcer (``nova.policy.reset``).
"""

import itertools

from nova import policy as nova_policy

from nova_qga_ext.extensions import manager

RULE_PREFIX = 'os_compute_api:qga-ext:'


def list_rules():
    """All installed extensions' rules, for oslopolicy-sample-generator."""
    return list(itertools.chain.from_iterable(
        extension_class.POLICY_RULES
        for extension_class in manager.installed().values()))


def get_enforcer():
    """Nova's enforcer with our rules, for oslopolicy-policy-generator.

    Nova's own ``oslo.policy.enforcer`` entry point knows only nova's rules.
    """
    enforcer = nova_policy.get_enforcer()
    _register(enforcer)
    return enforcer


def _register(enforcer):
    for rule in list_rules():
        if rule.name not in enforcer.registered_rules:
            enforcer.register_default(rule)


def authorize(context, rule, target):
    """``context.can`` for one of our rules, registering it if needed."""
    nova_policy.init()
    enforcer = nova_policy._ENFORCER
    if rule not in enforcer.registered_rules:
        _register(enforcer)
    context.can(rule, target=target)
