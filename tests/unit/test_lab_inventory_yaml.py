"""Lab.inventory_yaml: an inventory that the real loader accepts and that matches the lab."""
from __future__ import annotations

from pathlib import Path

import pytest

from k1prov.errors import ConfigError
from k1prov.inventory.loader import parse_inventory
from k1prov.lab import Lab, LabSettings


def lab(tmp_path: Path, **kw) -> Lab:
    kw.setdefault("auth", "none")  # the default lab runs Keystone; most of these name URLs
    return Lab(LabSettings(root=tmp_path / "lab", venv=tmp_path / "venv", **kw))


def test_five_node_lab_matches_its_bmcs(tmp_path):
    lb = lab(tmp_path, ironic_port=16385, glance_port=19292, bmc_base_port=16230)
    inv = parse_inventory(lb.inventory_yaml(), path=tmp_path / "lab.yaml")
    assert inv.cluster == "lab"
    assert inv.cloud.ironic_url == "http://10.251.0.1:16385"
    assert inv.cloud.glance_url == "http://127.0.0.1:19292"
    assert inv.cloud.cloud is None                      # hermetic: no clouds.yaml lookup
    assert [n.name for n in inv.nodes] == ["lab01", "lab02", "lab03", "lab04", "lab05"]
    assert [n.bmc.port for n in inv.nodes] == [16230, 16231, 16232, 16233, 16234]
    assert {n.bmc.address for n in inv.nodes} == {"127.0.0.1"}
    # The machines' own NICs: 02:6b:70:00 + the BMC port.
    assert [n.macs for n in inv.nodes] == [(f"02:6b:70:00:3f:{0x66 + i:02x}",) for i in range(5)]
    assert [n.address for n in inv.nodes] == [f"10.251.0.{i}" for i in range(11, 16)]
    assert inv.network.prefix_length == 24
    assert inv.nodes[0].roles == ("zookeeper", "spark-master")
    assert [n.roles for n in inv.nodes[1:3]] == [("zookeeper",)] * 2
    assert [n.roles for n in inv.nodes[3:]] == [("spark-worker",)] * 2
    for n in inv.nodes:
        assert n.driver == "ipmi"
        assert n.interfaces == {"power": "ipmitool", "management": "ipmitool",
                                "deploy": "direct", "boot": "pxe"}
        assert n.bmc.username == "admin"
        assert n.bmc.password.file == str(tmp_path / "lab" / "bmc-password")
    assert inv.warnings == ()


def test_password_comes_from_the_lab_file(tmp_path):
    lb = lab(tmp_path)
    (tmp_path / "lab").mkdir()
    (tmp_path / "lab" / "bmc-password").write_text("s3cret-pw\n")
    text = lb.inventory_yaml()
    assert "s3cret" not in text
    inv = parse_inventory(text, path=tmp_path / "lab.yaml")
    assert inv.nodes[0].bmc.password.reveal() == "s3cret-pw"


def test_with_mesos_masters_are_the_zookeeper_members_and_agents_the_rest(tmp_path):
    lb = lab(tmp_path, nodes=6, http_port=18088, cidr="10.252.20.1/24")
    inv = parse_inventory(lb.inventory_yaml(mesos=True), path=tmp_path / "lab.yaml")
    assert [n.roles for n in inv.nodes] == [("zookeeper", "mesos-master", "spark-client")] + \
        [("zookeeper", "mesos-master")] * 2 + [("mesos-agent", "spark-worker")] * 3
    mesos = inv.roles["mesos"]
    # The build `lab up` publishes at a fixed URL, its sha512 from the file beside it.
    assert mesos["source"] == "tarball" and mesos["url"] == "http://10.252.20.1:18088/mesos/lab-build"
    assert mesos["sha512_file"] == str(tmp_path / "lab" / "http" / "mesos" / "SHA512SUMS")
    assert mesos["agent_flags"]["launcher"] == "posix" and mesos["isolation"] == "posix/cpu,posix/mem"
    assert inv.roles["spark"]["manager"] == "mesos"
    assert inv.warnings == ()


@pytest.mark.parametrize("mesos", [False, True])
@pytest.mark.parametrize("count", [1, 2, 3, 4])
def test_small_labs(tmp_path, count, mesos):
    inv = parse_inventory(lab(tmp_path, nodes=count).inventory_yaml(mesos=mesos),
                          path=tmp_path / "lab.yaml")
    assert len(inv.nodes) == count
    assert inv.nodes[0].has_role("mesos-master" if mesos else "spark-master")


def test_subset_and_wide_names(tmp_path):
    lb = lab(tmp_path, nodes=120)
    inv = parse_inventory(lb.inventory_yaml(nodes=7, cluster="small"), path=tmp_path / "x.yaml")
    assert inv.cluster == "small" and len(inv.nodes) == 7
    big = parse_inventory(lb.inventory_yaml(), path=tmp_path / "y.yaml")
    assert big.nodes[-1].name == "lab120" and big.nodes[0].name == "lab001"
    assert big.nodes[-1].bmc.port == 6230 + 119
    assert big.nodes[-1].macs == ("02:6b:70:00:18:cd",)
    assert big.nodes[-1].address == "10.251.0.130"


def test_more_nodes_than_the_lab_has_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="has 5 machines"):
        lab(tmp_path).inventory_yaml(nodes=6)


@pytest.mark.parametrize("auth", ["http_basic", "keystone"])
def test_a_lab_with_auth_is_named_by_its_clouds_entry(tmp_path, auth):
    lb = lab(tmp_path, auth=auth, cloud_name="mylab")
    inv = parse_inventory(lb.inventory_yaml(), path=tmp_path / "lab.yaml")
    assert (inv.cloud.cloud, inv.cloud.ironic_url, inv.cloud.glance_url) == ("mylab", None, None)


def test_lab_up_remembers_the_auth_mode(tmp_path, monkeypatch):
    from k1prov.cli.lab_cmd import _lab

    monkeypatch.setenv("K1PROV_LAB_DIR", str(tmp_path / "lab"))
    assert _lab().settings.auth == "keystone"            # the default
    assert _lab(auth="none", remember=True).settings.auth == "none"
    assert _lab().settings.auth == "none"
    assert _lab(auth="keystone", remember=True).settings.auth == "keystone"
    assert _lab().settings.auth == "keystone"
    assert _lab(auth="none", remember=True).settings.auth == "none"
    assert _lab().settings.auth == "none"


def test_lab_up_remembers_the_hosts_init(tmp_path, monkeypatch):
    from k1prov.cli.lab_cmd import _lab

    monkeypatch.setenv("K1PROV_LAB_DIR", str(tmp_path / "lab"))
    assert _lab().settings.host_init == "systemd"          # the default
    assert _lab(host_init="plain", remember=True).settings.host_init == "plain"
    assert _lab().settings.host_init == "plain"
    assert _lab(nodes=3, remember=True).settings.host_init == "plain"   # kept by another option
    assert _lab(host_init="systemd", remember=True).settings.host_init == "systemd"
    assert _lab().settings.host_init == "systemd"


def test_lab_up_remembers_the_conductors_and_their_groups(tmp_path, monkeypatch):
    from k1prov.cli.lab_cmd import _lab

    monkeypatch.setenv("K1PROV_LAB_DIR", str(tmp_path / "lab"))
    assert _lab().settings.conductors == 0
    s = _lab(conductors=2, conductor_groups="ga,gb", remember=True).settings
    assert (s.conductors, s.conductor_groups) == (2, ("ga", "gb"))
    assert (_lab().settings.conductors, _lab().settings.conductor_groups) == (2, ("ga", "gb"))
    # `--conductors 3` without groups: all three in the default group.
    assert _lab(conductors=3, remember=True).settings.conductor_groups == ()
    assert _lab(conductors=0, remember=True).settings.conductors == 0
    assert _lab().settings.conductors == 0
    assert _lab(conductor_groups="x,y,z").settings.conductors == 3
