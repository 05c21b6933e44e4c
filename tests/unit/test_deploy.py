"""k1prov.deploy's pure parts, and the config drive as a lab machine reads it (no network)."""
from __future__ import annotations

from pathlib import Path

import pytest

from k1prov.configdrive import StaticNetwork, build_config_drive, build_config_drive_iso
from k1prov.image_registration import image_visibility
from k1prov.hostkeys import ensure_host_key
from k1prov.inventory.model import Bmc, Cloud, Inventory, Node, SecretRef
from k1prov.lab.configdrive_apply import host_config_from_config_drive
from k1prov.provisioner import Provisioner
from k1prov.ssh_ready import BOOT_AGE_COMMAND, boot_age, write_pinned_known_hosts

# ---- the config drive: k1prov's dict -> Ironic's ISO -> what the machine reads from it


def _drive(tmp_path: Path) -> tuple[dict, object]:
    key = ensure_host_key(tmp_path, "dpl01")
    drive = build_config_drive(hostname="dpl01", uuid="u-1", public_keys=["ssh-ed25519 AAAAC3Nz op@x"],
                               host_key=key,
                               network=StaticNetwork("10.251.0.31", 24, "10.251.0.1", (), None,
                                                     "52:54:00:00:00:01"))
    return drive, key


def test_host_config_from_the_json_config_drive(tmp_path):
    drive, key = _drive(tmp_path)
    config = host_config_from_config_drive(build_config_drive_iso(drive))
    assert config.hostname == "dpl01"
    assert (config.address, config.prefix, config.gateway) == ("10.251.0.31", 24, "10.251.0.1")
    assert config.authorized_keys == ("ssh-ed25519 AAAAC3Nz op@x",)
    assert config.ssh_host_keys["ed25519"][1].split()[:2] == key.public_line.split()[:2]


# ---- deploy helpers


def test_boot_age_from_the_remote_command_output():
    assert BOOT_AGE_COMMAND.count("/proc/1/stat") == 1
    # uptime 1000 s, PID 1 started at tick 99000 with 100 ticks/s: 10 s old.
    assert boot_age("1000.00 99000 100\n") == pytest.approx(10.0)
    assert boot_age("garbage") is None


def test_standalone_clouds_get_public_images_keystone_clouds_the_default(tmp_path, monkeypatch):
    import yaml

    from k1prov.cloud import connect, uses_keystone

    clouds = {
        "ks": {"auth_type": "password", "auth": {"auth_url": "http://127.0.0.1:9/v3", "username": "u",
                                                  "password": "p", "project_name": "x"}},
        "basic": {"auth_type": "http_basic",
                  "auth": {"username": "u", "password": "p", "endpoint": "http://127.0.0.1:9"}},
        "open": {"auth_type": "none", "baremetal_endpoint_override": "http://127.0.0.1:9"},
    }
    (tmp_path / "clouds.yaml").write_text(yaml.safe_dump({"clouds": clouds}))
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(tmp_path / "clouds.yaml"))
    # Connecting sends nothing: these URLs are never called.
    seen = {name: uses_keystone(connect(Cloud(cloud=name), api_timeout=1)) for name in clouds}
    seen["explicit"] = uses_keystone(connect(Cloud(ironic_url="http://127.0.0.1:9"), api_timeout=1))
    assert seen == {"ks": True, "basic": False, "open": False, "explicit": False}
    assert image_visibility(False) == "public"
    assert image_visibility(True) is None


def _inventory(tmp_path: Path) -> Inventory:
    bmc = Bmc(address="127.0.0.1", port=623, username="admin", password=SecretRef(inline="x"))
    nodes = tuple(Node(name=f"dpl0{i}", index=i, bmc=bmc, macs=(f"52:54:00:00:00:0{i}",),
                       address=f"10.251.0.3{i}", roles=()) for i in (1, 2))
    return Inventory(path=tmp_path / "inv.yaml", cluster="c1", cloud=Cloud(ironic_url="http://x"),
                     nodes=nodes)


def test_known_hosts_pins_only_nodes_with_keys_and_lives_in_the_cluster_state_dir(tmp_path):
    prov = Provisioner(_inventory(tmp_path), state_root=tmp_path / "state")
    assert prov.cluster_state_dir == tmp_path / "state" / "c1"
    key = ensure_host_key(prov.cluster_state_dir, "dpl01")
    path = write_pinned_known_hosts(prov.context)
    assert path == prov.cluster_state_dir / "known_hosts"
    lines = path.read_text().splitlines()
    assert lines == [f"10.251.0.31,dpl01 {' '.join(key.public_line.split()[:2])}"]
    # No key was made for the node that was never deployed.
    assert not (prov.cluster_state_dir / "hostkeys" / "dpl02").exists()


def test_deploy_without_public_keys_is_refused_before_any_change(tmp_path):
    """The check `inventory check` runs (k1prov.preflight) is the one deploy and reimage
    run first: located at the ssh: line, before the context is asked for anything."""
    from types import SimpleNamespace

    from k1prov.deploy import deploy, reimage
    from k1prov.errors import InventoryError
    from k1prov.inventory import parse_inventory

    path = tmp_path / "inv.yaml"
    inv = parse_inventory("""\
cluster: x
cloud: {ironic_url: "http://127.0.0.1:1"}
ssh: {user: root}
images: {user: {name: debian-12-generic}}
nodes:
  - {name: a, bmc: {address: 10.0.0.3, username: u, password: {env: P}},
     macs: ["52:54:00:00:00:01"], address: 10.0.0.1}
""", path=path)
    ctx = SimpleNamespace(inventory=inv)       # no select(), no conn: must not be reached
    for verb in (lambda: deploy(ctx), lambda: reimage(ctx, ["a"])):
        with pytest.raises(InventoryError) as caught:
            verb()
        assert str(caught.value).startswith(f"{path}:3: ssh.public_keys: none given")
