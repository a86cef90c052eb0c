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

"""A fake openstacksdk connection and OSC app for the command tests.

The fakes answer with real ``requests.Response`` objects, so the SDK's own
error parsing (``raise_from_response``) runs unchanged; nothing goes over
HTTP.
"""

import http
import io
import json
import types

from openstack.compute.v2 import server as sdk_server
from openstack import exceptions as sdk_exceptions
from openstack.image.v2 import image as sdk_image
import requests
import testtools

from nova_qga_ext.osc import client

SERVER_ID = '8d2c6f0a-55b1-4c1e-9f5e-2a3b4c5d6e7f'
SERVER_NAME = 'web1'


def response(status, body=None, headers=None):
    """A requests.Response as keystoneauth hands it to openstacksdk."""
    resp = requests.Response()
    resp.status_code = status
    resp.reason = http.HTTPStatus(status).phrase
    if body is None:
        resp._content = b''
    else:
        resp._content = json.dumps(body).encode()
        resp.headers['Content-Type'] = 'application/json'
    resp.headers.update(headers or {})
    return resp


class FakeCompute:
    """The part of the SDK compute proxy the plugin uses."""

    def __init__(self):
        self.servers = [sdk_server.Server(id=SERVER_ID, name=SERVER_NAME)]
        self.replies = []
        self.posts = []
        self.lookups = []

    def find_server(self, name_or_id, ignore_missing=True,
                    all_projects=False):
        self.lookups.append((name_or_id, ignore_missing, all_projects))
        for server in self.servers:
            if name_or_id in (server.id, server.name):
                return server
        # What openstack.resource.Resource.find raises.
        raise sdk_exceptions.NotFoundException(
            'No Server found for %s' % name_or_id)

    def post(self, url, **kwargs):
        self.posts.append((url, kwargs))
        return self.replies.pop(0)

    @property
    def bodies(self):
        return [kwargs['json'] for _url, kwargs in self.posts]


class FakeImages:
    """The part of the SDK image proxy the plugin uses."""

    def __init__(self, *states):
        # Each state is an Image attribute dict, or an exception to raise.
        self.states = list(states)
        self.gets = []

    def get_image(self, image_id):
        self.gets.append(image_id)
        state = self.states.pop(0)
        if isinstance(state, Exception):
            raise state
        return sdk_image.Image(id=image_id, **state)


def binary_stream(data=b''):
    """A text stream over bytes, like sys.stdin/stdout with a .buffer."""
    return io.TextIOWrapper(io.BytesIO(data), encoding='utf-8',
                            write_through=True)


def written(stream):
    stream.flush()
    return stream.buffer.getvalue()


class CommandTestCase(testtools.TestCase):
    """Runs a command class the way cliff does: parse, then run."""

    api_version = '2.1'

    def setUp(self):
        super().setUp()
        self.compute = FakeCompute()
        self.images = FakeImages()
        self.app = types.SimpleNamespace(
            stdin=binary_stream(), stdout=binary_stream(),
            stderr=binary_stream(),
            client_manager=types.SimpleNamespace(
                qga_ext=client.ServerActions(self.compute, self.api_version),
                image=self.images))

    def parse(self, cls, argv, prog='openstack test'):
        cmd = cls(self.app, None)
        return cmd, cmd.get_parser(prog).parse_args(argv)

    def run_command(self, cls, argv, stdin=b''):
        """Return (exit status, stdout bytes, stderr bytes)."""
        self.app.stdin = binary_stream(stdin)
        cmd, parsed_args = self.parse(cls, argv)
        status = cmd.run(parsed_args)
        return status, written(self.app.stdout), written(self.app.stderr)
