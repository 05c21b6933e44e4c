"""k1prov.cloud: refusals (HTTP 401/403) as one line naming the service."""
from __future__ import annotations

import requests
from keystoneauth1 import exceptions as ks_exc
from openstack import exceptions as os_exc

from k1prov.cloud import refusal, translate
from k1prov.inventory.model import Cloud


def _sdk_error(status: int, url: str, details: str) -> os_exc.HttpException:
    resp = requests.Response()
    resp.status_code = status
    resp.request = requests.Request("GET", url).prepare()
    resp.url = url
    return os_exc.HttpException(message="Error", response=resp, details=details)


def test_ironic_http_basic_401_names_ironic_and_what_it_refused():
    exc = _sdk_error(401, "http://10.0.0.5:6385/v1/nodes/detail", "Incorrect username or password")
    err = refusal(exc, service="Ironic")
    assert str(err) == ("Ironic at http://10.0.0.5:6385: refused the credentials "
                        "(HTTP 401: Incorrect username or password)")
    assert err.service == "ironic" and not err.transient and err.exit_code == 1


def test_keystone_401_while_getting_a_token_names_keystone_and_the_entry():
    exc = ks_exc.Unauthorized(message="The request you have made requires authentication.",
                              url="http://127.0.0.1:5000/v3/auth/tokens", method="POST", http_status=401)
    err = translate(exc, Cloud(cloud="mycloud"))
    assert str(err).startswith("Keystone at http://127.0.0.1:5000: refused the credentials (HTTP 401")
    assert str(err).endswith("check clouds.yaml entry 'mycloud'")


def test_a_policy_403_is_a_refusal_of_the_request_and_other_errors_are_not_refusals():
    exc = _sdk_error(403, "http://127.0.0.1:9292/v2/images", "Forbidden")
    assert "refused the request to this user (HTTP 403: Forbidden)" in str(refusal(exc, service="Glance"))
    assert refusal(_sdk_error(409, "http://10.0.0.5:6385/v1/nodes/x", "locked")) is None
    assert refusal(ValueError("x")) is None
