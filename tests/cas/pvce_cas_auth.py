"""A django-cas-server authentication class over a JSON file:
{"username": {"password": "...", "attributes": {"name": "value" | ["v1", "v2"]}}}."""
import json
import os

from cas_server.auth import AuthUser


def _users():
    with open(os.environ['PVCE_CAS_USERS'], encoding='utf-8') as f:
        return json.load(f)


class FileAuthUser(AuthUser):
    def test_password(self, password):
        user = _users().get(self.username)
        return bool(user) and user.get('password') == password

    def attributs(self):
        user = _users().get(self.username) or {}
        return dict(user.get('attributes', {}))
