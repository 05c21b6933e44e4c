"""Connections to Ironic and Glance through openstacksdk, and translation of its errors.

The only module (with ironic.py and glance.py) that imports openstack; everything
above it sees k1prov errors.
"""
from __future__ import annotations

import logging

from k1prov.errors import CloudError, ConfigError
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

    if isinstance(exc, (ConnectionError, TimeoutError, ka_conn.ConnectionError)):
        # keystoneauth's ConnectFailure, ConnectTimeout and ReadTimeout derive from this one.
        return True
    if isinstance(exc, CloudError):
        return bool(getattr(exc, "transient", False))
    if isinstance(exc, os_exc.HttpException):
        return exc.status_code in (502, 503, 504)
    if isinstance(exc, os_exc.SDKException):
        text = str(exc)
        return "Connection aborted" in text or "Connection reset" in text or "Max retries" in text
    return False
