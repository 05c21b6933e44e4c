"""The lab's entry in clouds.yaml, merged into whatever entries are already there."""
from __future__ import annotations

from pathlib import Path

import yaml

from k1prov.atomic_file import write_atomic
from k1prov.errors import LabError
from k1prov.lab.config import BAREMETAL_API_VERSION, LabSettings


def cloud_entry(s: LabSettings) -> dict:
    """An entry that both openstacksdk and the `openstack` CLI accept without Keystone."""
    return {
        "auth_type": "none",
        "baremetal_endpoint_override": s.ironic_url,
        "image_endpoint_override": s.glance_url,
        "baremetal_api_version": BAREMETAL_API_VERSION,
        "image_api_version": "2",
    }


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


def write_cloud_entry(s: LabSettings) -> Path:
    """Write (or refresh) the lab's entry; the file keeps its mode, a new one is 0600
    because clouds.yaml files usually hold other clouds' passwords."""
    path = s.clouds_yaml_path
    try:
        existing = path.read_text()
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        existing, mode = None, 0o600
    except OSError as exc:
        raise LabError(f"cannot read {path}: {exc.strerror}") from None
    text = merge_cloud_entry(existing, s.cloud_name, cloud_entry(s), path=path)
    if text == existing:
        return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, text, mode=mode)
    except OSError as exc:
        raise LabError(f"cannot write {path}: {exc.strerror}") from None
    return path
