"""The lab's entry in clouds.yaml, merged into whatever entries are already there."""
from __future__ import annotations

from pathlib import Path

import yaml

from k1prov.atomic_file import write_atomic
from k1prov.errors import LabError
from k1prov.lab.config import (BAREMETAL_API_VERSION, HTTP_BASIC_USER, KEYSTONE_ADMIN,
                               KEYSTONE_REGION, LabSettings)


def cloud_entry(s: LabSettings, *, password: str = "") -> dict:
    """The lab's entry, for openstacksdk, the `openstack` and `baremetal` CLIs alike.

    - none: no auth, both endpoints given;
    - http_basic: keystoneauth's http_basic plugin (user and password on every request);
      its `endpoint` is Ironic's, and Glance (no auth, loopback) is given apart;
    - keystone: password auth, project-scoped, endpoints from Keystone's catalog.
    """
    versions = {"baremetal_api_version": BAREMETAL_API_VERSION, "image_api_version": "2"}
    if s.auth == "keystone":
        return {"auth_type": "password",
                "auth": {"auth_url": s.keystone_url + "/v3", "username": KEYSTONE_ADMIN,
                         "password": password, "project_name": "admin",
                         "user_domain_name": "Default", "project_domain_name": "Default"},
                "region_name": KEYSTONE_REGION, "interface": "public", **versions}
    if s.auth == "http_basic":
        return {"auth_type": "http_basic",
                "auth": {"username": HTTP_BASIC_USER, "password": password, "endpoint": s.ironic_url},
                "baremetal_endpoint_override": s.ironic_url,
                "image_endpoint_override": s.glance_url, **versions}
    return {"auth_type": "none", "baremetal_endpoint_override": s.ironic_url,
            "image_endpoint_override": s.glance_url, **versions}


def merge_cloud_entry(existing_text: str | None, name: str, entry: dict, *,
                      path: Path) -> str:
    """The clouds.yaml text with `name` set to `entry`, every other entry kept."""
    data = {}
    if existing_text and existing_text.strip():
        try:
            data = yaml.safe_load(existing_text)
        except yaml.YAMLError as exc:
            raise LabError(f"{path}: not valid YAML, not touching it: {exc}") from None
        if not isinstance(data, dict) or not isinstance(data.get("clouds", {}), dict):
            raise LabError(f"{path}: expected a mapping with a 'clouds' mapping, not touching it")
    data.setdefault("clouds", {})
    data["clouds"][name] = entry
    return yaml.safe_dump(data, default_flow_style=False, sort_keys=False)


def write_cloud_entry(s: LabSettings, *, password: str = "") -> Path:
    """Write (or refresh) the lab's entry; a new file is 0600 because clouds.yaml files
    usually hold other clouds' passwords. An existing file keeps its mode, except that an
    entry with a password makes it readable by its owner only."""
    path = s.clouds_yaml_path
    try:
        existing = path.read_text()
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        existing, mode = None, 0o600
    except OSError as exc:
        raise LabError(f"cannot read {path}: {exc.strerror}") from None
    if password:
        mode &= 0o600
    text = merge_cloud_entry(existing, s.cloud_name, cloud_entry(s, password=password), path=path)
    if text == existing:
        if mode != path.stat().st_mode & 0o777:
            path.chmod(mode)
        return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, text, mode=mode)
    except OSError as exc:
        raise LabError(f"cannot write {path}: {exc.strerror}") from None
    return path
