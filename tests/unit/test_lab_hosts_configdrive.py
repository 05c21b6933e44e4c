"""Config drive of a lab host: produce, read back (ISO, Ironic's gzip+base64, directory), apply."""
import base64
import gzip
import json
import shutil
import stat

import pytest

from k1prov.errors import ConfigError
from k1prov.lab.configdrive_apply import (HostConfig, apply_host_config, build_config_drive_iso,
                                          config_drive_parts, host_config_from_config_drive)

PRIVATE = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\nAAAAAAAA==\n-----END OPENSSH PRIVATE KEY-----\n"
PUBLIC = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostKey root@zk1"


def make_config(**changes):
    values = dict(hostname="zk1", address="10.251.0.11", prefix=24, gateway="10.251.0.1",
                  authorized_keys=("ssh-ed25519 AAAAuser1 alice", "ssh-rsa AAAAuser2 bob"),
                  ssh_host_keys={"ed25519": (PRIVATE, PUBLIC)})
    values.update(changes)
    return HostConfig(**values)


def test_iso_round_trip_keeps_every_field():
    config = make_config()
    assert host_config_from_config_drive(build_config_drive_iso(config)) == config


def test_ironic_gzip_base64_form_is_read_as_str_and_bytes():
    config = make_config()
    packed = base64.b64encode(gzip.compress(build_config_drive_iso(config)))
    assert host_config_from_config_drive(packed) == config
    assert host_config_from_config_drive(packed.decode()) == config


def test_iso_file_path_is_read(tmp_path):
    config = make_config(gateway=None, ssh_host_keys={})
    drive = tmp_path / "config-2.iso"
    drive.write_bytes(build_config_drive_iso(config))
    assert host_config_from_config_drive(drive) == config
    assert host_config_from_config_drive(str(drive)) == config


@pytest.mark.skipif(not any(shutil.which(t) for t in ("genisoimage", "mkisofs", "xorrisofs")),
                    reason="openstacksdk's configdrive.build needs genisoimage, mkisofs or xorrisofs")
def test_drive_built_by_openstacksdk_is_read():
    # The deploy path builds drives with openstacksdk (or Ironic does, the same way).
    from openstack.baremetal import configdrive

    config = make_config()
    parts = config_drive_parts(config)
    packed = configdrive.build(parts["meta_data"], user_data=parts["user_data"],
                               network_data=parts["network_data"])
    assert host_config_from_config_drive(packed) == config


def test_unpacked_directory_with_cidr_address_and_cloud_config_keys(tmp_path):
    latest = tmp_path / "openstack/latest"
    latest.mkdir(parents=True)
    (latest / "meta_data.json").write_text(json.dumps(
        {"hostname": "spark-w1", "public_keys": {"a": "ssh-ed25519 AAAAone"}}))
    (latest / "network_data.json").write_text(json.dumps({"networks": [
        {"id": "dhcp", "type": "ipv4_dhcp", "link": "eth0"},
        {"id": "n1", "type": "ipv4", "link": "eth0", "ip_address": "10.9.8.7/16",
         "routes": [{"network": "10.0.0.0", "netmask": "255.0.0.0", "gateway": "10.9.0.2"},
                    {"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "10.9.0.1"}]}]}))
    (latest / "user_data").write_text(
        "#cloud-config\nssh_authorized_keys: ['ssh-ed25519 AAAAtwo', 'ssh-ed25519 AAAAone']\n")
    config = host_config_from_config_drive(tmp_path)
    assert (config.hostname, config.address, config.prefix, config.gateway) == ("spark-w1", "10.9.8.7", 16,
                                                                                 "10.9.0.1")
    assert config.authorized_keys == ("ssh-ed25519 AAAAone", "ssh-ed25519 AAAAtwo")
    assert config.ssh_host_keys == {}


@pytest.mark.parametrize("drive, message", [
    (b"not a drive at all", "ISO9660"),
    (base64.b64encode(b"plain text, not a drive"), "not an ISO9660"),
    (base64.b64encode(b"\x1f\x8bnot gzip"), "bad gzip"),
])
def test_garbage_is_a_config_error(drive, message):
    with pytest.raises(ConfigError, match=message):
        host_config_from_config_drive(drive)


def test_drive_without_static_ipv4_is_rejected(tmp_path):
    latest = tmp_path / "openstack/latest"
    latest.mkdir(parents=True)
    (latest / "meta_data.json").write_text(json.dumps({"hostname": "h"}))
    (latest / "network_data.json").write_text(json.dumps({"networks": [{"type": "ipv4_dhcp"}]}))
    with pytest.raises(ConfigError, match="no static ipv4"):
        host_config_from_config_drive(tmp_path)


@pytest.mark.parametrize("changes, message", [
    ({"hostname": "bad_name"}, "bad hostname"),
    ({"address": "10.251.0.300"}, "10.251.0.300"),
    ({"gateway": "10.1.0.1"}, "outside"),
    ({"ssh_host_keys": {"dsa": ("x", "y")}}, "dsa"),
])
def test_host_config_validation(changes, message):
    with pytest.raises(ConfigError, match=message):
        make_config(**changes)


def test_apply_writes_files_with_safe_modes_and_drops_stale_host_keys(tmp_path):
    (tmp_path / "etc/ssh").mkdir(parents=True)
    (tmp_path / "etc/ssh/ssh_host_rsa_key").write_text("old")
    (tmp_path / "etc/ssh/ssh_host_rsa_key.pub").write_text("old")
    apply_host_config(tmp_path, make_config())
    assert (tmp_path / "etc/hostname").read_text() == "zk1\n"
    assert "10.251.0.11\tzk1" in (tmp_path / "etc/hosts").read_text()
    keys = (tmp_path / "root/.ssh/authorized_keys").read_text().splitlines()
    assert keys == ["ssh-ed25519 AAAAuser1 alice", "ssh-rsa AAAAuser2 bob"]
    assert stat.S_IMODE((tmp_path / "root/.ssh").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "root/.ssh/authorized_keys").stat().st_mode) == 0o600
    private = tmp_path / "etc/ssh/ssh_host_ed25519_key"
    assert private.read_text() == PRIVATE and stat.S_IMODE(private.stat().st_mode) == 0o600
    assert (tmp_path / "etc/ssh/ssh_host_ed25519_key.pub").read_text() == PUBLIC + "\n"
    assert sorted(p.name for p in (tmp_path / "etc/ssh").iterdir()) == [
        "ssh_host_ed25519_key", "ssh_host_ed25519_key.pub"]
