"""k1prov.lab.clouds: the lab's clouds.yaml entry merges into existing files."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from openstack.config.loader import OpenStackConfig

from k1prov.errors import LabError
from k1prov.lab.clouds import write_cloud_entry
from k1prov.lab.config import LabSettings


def settings(tmp_path: Path, **kw) -> LabSettings:
    kw.setdefault("auth", "none")  # the default lab runs Keystone; these are about no auth
    return LabSettings(root=tmp_path / "lab", venv=tmp_path / "venv",
                       clouds_yaml=tmp_path / "os" / "clouds.yaml", **kw)


def test_new_file_is_private_and_has_the_entry(tmp_path):
    s = settings(tmp_path, ironic_port=16385, glance_port=19292)
    path = write_cloud_entry(s)
    assert path == tmp_path / "os" / "clouds.yaml"
    assert path.stat().st_mode & 0o777 == 0o600
    entry = yaml.safe_load(path.read_text())["clouds"]["k1prov-lab"]
    assert entry["auth_type"] == "none"
    assert entry["baremetal_endpoint_override"] == "http://10.251.0.1:16385"
    assert entry["image_endpoint_override"] == "http://127.0.0.1:19292"


def test_other_entries_and_mode_are_kept(tmp_path):
    s = settings(tmp_path, cloud_name="mylab")
    path = s.clouds_yaml_path
    path.parent.mkdir()
    other = {"auth": {"auth_url": "https://keystone.example/v3", "password": "x"}}
    path.write_text(yaml.safe_dump({"clouds": {"prod": other, "mylab": {"auth_type": "old"}},
                                    "cache": {"expiration_time": 5}}))
    path.chmod(0o640)
    write_cloud_entry(s)
    data = yaml.safe_load(path.read_text())
    assert data["clouds"]["prod"] == other
    assert data["cache"] == {"expiration_time": 5}
    assert data["clouds"]["mylab"]["auth_type"] == "none"
    assert path.stat().st_mode & 0o777 == 0o640


def test_unparsable_file_is_left_alone(tmp_path):
    s = settings(tmp_path)
    s.clouds_yaml_path.parent.mkdir()
    s.clouds_yaml_path.write_text("clouds: [unclosed\n")
    with pytest.raises(LabError, match="not valid YAML"):
        write_cloud_entry(s)
    assert s.clouds_yaml_path.read_text() == "clouds: [unclosed\n"


def test_openstacksdk_reads_the_entry(tmp_path):
    s = settings(tmp_path, ironic_port=16385, glance_port=19292)
    write_cloud_entry(s)
    region = OpenStackConfig(config_files=[str(s.clouds_yaml_path)], vendor_files=[]) \
        .get_one(cloud="k1prov-lab")
    assert region.get_auth_args() == {}
    assert region.config["auth_type"] == "none"
    assert region.get_endpoint("baremetal") == "http://10.251.0.1:16385"
    assert region.get_endpoint("image") == "http://127.0.0.1:19292"


def _region(s: LabSettings):
    return OpenStackConfig(config_files=[str(s.clouds_yaml_path)], vendor_files=[]).get_one(cloud=s.cloud_name)


def test_http_basic_entry_is_keystoneauths_plugin_with_ironics_endpoint(tmp_path):
    s = settings(tmp_path, auth="http_basic", ironic_port=16385, glance_port=19292)
    write_cloud_entry(s, password="pw-basic")
    region = _region(s)
    assert region.config["auth_type"] == "http_basic"
    assert region.get_auth_args() == {"username": "k1prov", "password": "pw-basic",
                                      "endpoint": "http://10.251.0.1:16385"}
    assert region.get_endpoint("baremetal") == "http://10.251.0.1:16385"
    assert region.get_endpoint("image") == "http://127.0.0.1:19292"


def test_keystone_entry_is_project_scoped_password_auth_with_the_catalog(tmp_path):
    s = settings(tmp_path, auth="keystone", keystone_port=15000)
    write_cloud_entry(s, password="pw-ks")
    region = _region(s)
    assert region.config["auth_type"] == "password"
    args = region.get_auth_args()
    assert args["auth_url"] == "http://127.0.0.1:15000/v3"
    assert (args["username"], args["password"], args["project_name"]) == ("admin", "pw-ks", "admin")
    assert region.get_region_name() == "RegionOne"
    # No endpoint overrides: Ironic and Glance come from Keystone's catalog.
    assert region.get_endpoint("baremetal") is None


def test_an_entry_with_a_password_makes_an_open_file_private(tmp_path):
    s = settings(tmp_path, auth="http_basic")
    path = s.clouds_yaml_path
    path.parent.mkdir()
    path.write_text(yaml.safe_dump({"clouds": {"other": {"auth_type": "none"}}}))
    path.chmod(0o644)
    write_cloud_entry(s, password="pw")
    assert path.stat().st_mode & 0o777 == 0o600
    # Unchanged text, still made private.
    path.chmod(0o644)
    write_cloud_entry(s, password="pw")
    assert path.stat().st_mode & 0o777 == 0o600
