"""Connections to Ironic and Glance through openstacksdk, and translation of its errors.

The only module (with ironic.py and glance.py) that imports openstack; everything
above it sees k1prov errors.
"""
from __future__ import annotations

import logging
import re

from k1prov.errors import CloudError, ConfigError, K1provError
from k1prov.fanout.engine import default_is_transient
from k1prov.inventory.model import Cloud

log = logging.getLogger("k1prov.cloud")


def connect(cloud: Cloud, *, api_timeout: float):
    """An openstacksdk Connection for the inventory's cloud.

    With explicit endpoints no clouds.yaml or OS_* variable is read, so an
    operator's other clouds can never leak into a standalone-Ironic run.
    """
    import openstack
    from openstack import exceptions as os_exc

    try:
        if cloud.cloud:
            return openstack.connect(cloud=cloud.cloud, api_timeout=api_timeout,
                                     baremetal_api_version=cloud.ironic_api_version)
        attrs = dict(auth_type="none", load_yaml_config=False, load_envvars=False,
                     api_timeout=api_timeout,
                     baremetal_endpoint_override=cloud.ironic_url,
                     baremetal_api_version=cloud.ironic_api_version)
        if cloud.glance_url:
            attrs["image_endpoint_override"] = cloud.glance_url
        return openstack.connect(**attrs)
    except os_exc.ConfigException as exc:
        raise ConfigError(f"cloud {cloud.cloud!r}: {exc}") from None
    except os_exc.SDKException as exc:
        raise CloudError(f"cannot connect: {exc}") from None


# keystoneauth plugins that authenticate without Keystone (no token, no project).
_NO_KEYSTONE_AUTH = frozenset({"none", "noauth", "http_basic"})


def uses_keystone(conn) -> bool:
    """Whether a connection authenticates with Keystone (its entry's auth_type), i.e.
    whether its requests carry a project that can own Glance images."""
    return conn.config.config.get("auth_type", "password") not in _NO_KEYSTONE_AUTH


def describe_http_error(exc: Exception) -> str:
    """One line from an SDK exception: Ironic's faultstring rather than the whole body."""
    details = getattr(exc, "details", None)
    status = getattr(exc, "status_code", None)
    text = str(details or exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return f"HTTP {status}: {line}" if status else line


def is_transient(exc: BaseException) -> bool:
    """Failures worth retrying: the API was busy or the connection dropped.

    openstacksdk already retries 409 (node locked) and 503 on its own; what
    reaches here are resets and gateway errors (Ironic's embedded server resets
    connections under load).
    """
    from keystoneauth1.exceptions import connection as ka_conn
    from openstack import exceptions as os_exc

    if default_is_transient(exc):   # the engine's rule: k1prov errors, sockets, HTTP 502-504
        return True
    if isinstance(exc, ka_conn.ConnectionError):
        # keystoneauth's ConnectFailure, ConnectTimeout and ReadTimeout derive from this one.
        return True
    if isinstance(exc, os_exc.SDKException) and not isinstance(exc, os_exc.HttpException):
        text = str(exc)
        return "Connection aborted" in text or "Connection reset" in text or "Max retries" in text
    return False


_URL = re.compile(r"https?://[^\s,;'\"]+")
# The API path that tells which service a URL belongs to when the inventory names a
# clouds.yaml entry instead of the URLs.
_SERVICE_PATHS = (("/v1/nodes", "Ironic"), ("/v1/ports", "Ironic"), ("/baremetal", "Ironic"),
                  ("/v2/images", "Glance"), ("/image", "Glance"),
                  ("/v3/auth", "Keystone"), ("/identity", "Keystone"))
# HTTP statuses that mean "these credentials may not do this", with what was refused.
_REFUSALS = {401: "refused the credentials", 403: "refused the request to this user"}


def _service_of(url: str, cloud: Cloud | None) -> tuple[str, str]:
    """("Ironic", base URL) for a URL found in an error message."""
    cloud = cloud or Cloud()
    for name, base in (("Ironic", cloud.ironic_url), ("Glance", cloud.glance_url)):
        if base and url.startswith(base.rstrip("/")):
            return name, base
    for path, name in _SERVICE_PATHS:
        if path in url:
            return name, url.split(path, 1)[0] or url
    return "the cloud", url


def refusal(exc: BaseException, cloud: Cloud | None = None, *,
            service: str | None = None) -> CloudError | None:
    """An HTTP 401 or 403 (from Ironic, Glance, or Keystone while getting a token) as one
    CloudError line naming the service, its URL and what it refused; None otherwise.

    keystoneauth raises these from the auth plugin (Keystone's 401: wrong user or
    password) and openstacksdk from the API call (Ironic's http_basic 401, a policy's
    403). The message never carries the password: neither exception holds it."""
    status = getattr(exc, "status_code", None) or getattr(exc, "http_status", None)
    if status not in _REFUSALS or isinstance(exc, K1provError):
        return None
    url = getattr(exc, "url", None) or ""
    guessed, base = _service_of(url, cloud) if url else ("the cloud", (cloud and cloud.cloud) or "?")
    service = guessed if guessed == "Keystone" else (service or guessed)
    details = getattr(exc, "details", None)
    detail = " ".join(str(details).split())[:160] if details and details != str(exc) else ""
    entry = f"; check clouds.yaml entry {cloud.cloud!r}" if cloud and cloud.cloud and status == 401 else ""
    return CloudError(f"{service} at {base}: {_REFUSALS[status]} (HTTP {status}"
                      f"{': ' + detail if detail else ''}){entry}", service=service.lower())


def translate(exc: BaseException, cloud: Cloud | None, *,
              service: str | None = None) -> CloudError | None:
    """A keystoneauth, requests or openstacksdk exception as one CloudError line naming
    the service and its URL; None for anything else (a k1prov error, a bug).

    keystoneauth's errors (DiscoveryFailure when nothing answers at the URL,
    ConnectFailure, ConnectTimeout) are not openstacksdk exceptions, so the SDK's own
    translation never sees them: they are turned into CloudError here, at the boundary,
    for every verb (k1prov.cli.runtime.make_provisioner applies it). `service` names the
    service when the caller knows it (glance.py does)."""
    if isinstance(exc, K1provError):
        return None
    from keystoneauth1 import exceptions as ks_exc
    from openstack import exceptions as os_exc

    try:
        import requests
        requests_errors: tuple[type[BaseException], ...] = (requests.RequestException,)
    except ImportError:  # pragma: no cover - requests comes with openstacksdk
        requests_errors = ()
    if not isinstance(exc, (ks_exc.ClientException, os_exc.SDKException, *requests_errors)):
        return None
    refused = refusal(exc, cloud, service=service)
    if refused is not None:
        return refused
    text = " ".join(str(exc).split())
    found = _URL.search(text)
    url = found.group(0).rstrip(".") if found else \
        ((cloud.ironic_url or cloud.cloud or "?") if cloud else "?")
    guessed, base = _service_of(url, cloud)
    service = service or guessed
    transient = False
    if isinstance(exc, ks_exc.DiscoveryFailure):
        reason = "nothing answers there with an API version document (service down, or not its URL)"
        transient = True
    elif isinstance(exc, (ks_exc.ConnectTimeout, ks_exc.ConnectionError, *requests_errors)):
        lowered = text.lower()
        reason = ("connection refused" if "refused" in lowered else
                  "no answer (timed out)" if "timed out" in lowered or "timeout" in lowered else
                  "connection failed: " + text[:160])
        transient = True
    elif isinstance(exc, ks_exc.EndpointNotFound):
        reason = f"no endpoint in the catalog: {text[:160]}"
    else:
        reason = describe_http_error(exc)[:200]
    return CloudError(f"{service} at {base}: {reason}", service=service.lower(), transient=transient)
