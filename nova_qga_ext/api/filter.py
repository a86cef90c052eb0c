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

"""The paste filter that adds the extensions' server actions to nova-api.

nova routes server actions to a hard-coded list of controllers, so the
filter sits after ``keystonecontext`` in both the v2.1 and the legacy v2
pipelines and takes over only the actions an enabled extension claims. Any
other request reaches nova untouched, byte for byte; only a POST to
``/servers/{id}/action`` has its body read.

In api-paste.ini::

    [filter:qga_ext]
    use = egg:nova-qga-ext#qga_ext
"""

import json
import re

from nova.api.openstack import wsgi
from oslo_config import cfg

from nova_qga_ext.api import controller
from nova_qga_ext.extensions import manager

CONF = cfg.CONF

# PATH_INFO below the version prefix, with or without a project id.
_SERVER_ACTION = re.compile(
    r'^(?:/(?P<project_id>[^/]+))?/servers/(?P<server_id>[^/]+)/action$')


class ServerActionFilter:

    def __init__(self, application, extensions):
        self.application = application
        self._claimants = [ext for ext in extensions
                           if ext.api_controller is not None]
        self._resource = controller.ActionResource(
            ext.api_controller for ext in self._claimants)

    def __call__(self, environ, start_response):
        if environ['REQUEST_METHOD'] == 'POST':
            match = _SERVER_ACTION.match(environ.get('PATH_INFO', ''))
            if match and self._claims(wsgi.Request(environ)):
                routing_args = {'action': 'action',
                                'id': match['server_id']}
                if match['project_id']:
                    routing_args['project_id'] = match['project_id']
                environ['wsgiorg.routing_args'] = ((), routing_args)
                return self._resource(environ, start_response)
        return self.application(environ, start_response)

    def _claims(self, request):
        # Reading the body makes it seekable, so nova still reads it whole
        # when we pass. A body that is not one JSON object with one key is
        # not an action of ours: nova gives its own error for it.
        try:
            body = json.loads(request.body)
        except ValueError:
            return False
        if not isinstance(body, dict) or len(body) != 1:
            return False
        (action, arguments), = body.items()
        return any(ext.claims(action, arguments) for ext in self._claimants)


def filter_factory(global_conf, **local_conf):
    """paste.deploy filter factory, named ``qga_ext`` in the entry points."""
    extensions = manager.load(CONF)

    def _filter(application):
        return ServerActionFilter(application, extensions)
    return _filter
