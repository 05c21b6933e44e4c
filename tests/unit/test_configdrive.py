import base64
import gzip
import json
import shutil

import pytest

from k1prov import configdrive as cd
from k1prov.hostkeys import ensure_host_key

NET = cd.StaticNetwork("10.20.0.11", 24, "10.20.0.1", ("10.20.0.2", "10.20.0.3"), None, "52:54:00:AA:BB:01")
OPERATOR_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ3dYl9cQz0aHc0s7GZ7mE8S3rWZLrK4rGJZ5t3bbbbb op@desk"


@pytest.fixture()
def host_key(tmp_path):
    return ensure_host_key(tmp_path, "zk1")


def _drive(host_key, **extra):
    return cd.build_config_drive(hostname="zk1", uuid="3c0b8a5e-0000-4000-8000-000000000001",
                                 public_keys=[OPERATOR_KEY], host_key=host_key, network=NET, **extra)


def test_dict_form_carries_identity_keys_and_network(host_key):
    drive = _drive(host_key, domain="lab.example")
    assert set(drive) == {"meta_data", "network_data", "user_data"}
    json.dumps(drive)                                    # Ironic receives it as JSON
    meta = drive["meta_data"]
    assert meta["uuid"] == "3c0b8a5e-0000-4000-8000-000000000001"
    assert meta["hostname"] == "zk1.lab.example" and meta["name"] == "zk1"
    assert list(meta["public_keys"].values()) == [OPERATOR_KEY]

    (link,) = drive["network_data"]["links"]
    (net,) = drive["network_data"]["networks"]
    assert link["ethernet_mac_address"] == "52:54:00:aa:bb:01"
    assert link["mtu"] == 1500                           # Ironic regenerates links without one
    assert net["type"] == "ipv4" and net["link"] == link["id"]
    assert (net["ip_address"], net["netmask"]) == ("10.20.0.11", "255.255.255.0")
    assert net["routes"] == [{"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "10.20.0.1"}]
    assert [s["address"] for s in drive["network_data"]["services"]] == ["10.20.0.2", "10.20.0.3"]

    assert drive["user_data"].startswith("#cloud-config\n")
    config = cd.cloud_config(drive["user_data"])
    assert config["ssh_keys"] == {"ed25519_private": host_key.private_openssh,
                                  "ed25519_public": host_key.public_line}
    assert config["hostname"] == "zk1" and config["fqdn"] == "zk1.lab.example"
    assert config["ssh_deletekeys"] is True and config["ssh_genkeytypes"] == []
    assert config["disable_root"] is False and config["ssh_authorized_keys"] == [OPERATOR_KEY]


def test_no_gateway_means_no_route_and_mtu_is_kept(host_key):
    drive = cd.build_config_drive(hostname="n", uuid="u", public_keys=[], host_key=host_key,
                                  network=("10.0.0.5", 16, None, (), 9000, "aa:bb:cc:dd:ee:ff"),
                                  user_data=None)
    assert drive["network_data"]["networks"][0]["routes"] == []
    assert drive["network_data"]["networks"][0]["netmask"] == "255.255.0.0"
    assert drive["network_data"]["links"][0]["mtu"] == 9000


def test_bad_address_is_a_config_error(host_key):
    with pytest.raises(cd.ConfigError):
        cd.build_config_drive(hostname="n", uuid="u", public_keys=[], host_key=host_key,
                              network=("10.0.0.500", 24, None, (), None, "aa:bb:cc:dd:ee:ff"))


def test_operator_cloud_config_is_merged_but_identity_wins(host_key):
    theirs = "#cloud-config\nhostname: other\npackages: [htop]\nssh_authorized_keys: [ssh-rsa AAAAB3 extra]\n"
    config = cd.cloud_config(_drive(host_key, user_data=theirs)["user_data"])
    assert config["packages"] == ["htop"]
    assert config["hostname"] == "zk1"
    assert config["ssh_authorized_keys"] == [OPERATOR_KEY, "ssh-rsa AAAAB3 extra"]


def test_operator_script_travels_in_multipart(host_key):
    drive = _drive(host_key, user_data="#!/bin/sh\necho hello > /tmp/hello\n")
    assert drive["user_data"].startswith("Content-Type: multipart/mixed")
    assert "echo hello > /tmp/hello" in drive["user_data"]
    assert cd.cloud_config(drive["user_data"])["ssh_keys"]["ed25519_public"] == host_key.public_line


def test_iso_round_trip(host_key):
    drive = _drive(host_key)
    stored = cd.build_config_drive_iso(drive)
    iso = gzip.decompress(base64.b64decode(stored))
    assert iso[32769:32774] == b"CD001" and b"config-2" in iso[32768:34816]
    files = cd.parse_config_drive(stored)
    assert sorted(files) == sorted(f"openstack/{v}/{n}" for v in ("2012-08-10", "latest")
                                   for n in ("meta_data.json", "network_data.json", "user_data"))
    assert cd.config_drive_contents(stored) == drive
    assert cd.parse_config_drive(iso) == files           # a bare ISO too
    assert cd.parse_config_drive(drive) == files         # and the JSON form
    assert cd.parse_config_drive(json.dumps(drive)) == files


@pytest.mark.skipif(not any(shutil.which(t) for t in ("genisoimage", "mkisofs", "xorrisofs")),
                    reason="no genisoimage/mkisofs/xorrisofs")
def test_reads_the_iso_ironic_builds(host_key):
    from openstack.baremetal import configdrive as os_configdrive

    drive = _drive(host_key)
    # What ironic.conductor.configdrive_utils.build_configdrive does with the dict.
    stored = os_configdrive.build(drive["meta_data"], user_data=drive["user_data"].encode(),
                                  network_data=drive["network_data"])
    assert cd.config_drive_contents(stored) == drive


def test_garbage_is_a_clear_error():
    with pytest.raises(cd.ConfigDriveError):
        cd.parse_config_drive(base64.b64encode(gzip.compress(b"not an iso" * 5000)).decode())
    with pytest.raises(cd.ConfigDriveError):
        cd.parse_config_drive("https://swift.example/configdrive-abc")
