"""The lab's services for real: Ironic, Glance, the HTTP server and the BMC simulator.

One lab for the module (on ports shifted by 21000, its own root and clouds.yaml), then
the tests in order: everything answers, the SDK and the CLI see Ironic and Glance,
IPMI moves the simulated machines' power, wrong credentials are refused, `up` again is
a fast no-op, more nodes restart only the simulator, and `down` leaves nothing behind.
"""
from __future__ import annotations

import dataclasses
import io
import json
import os
import subprocess
import time

import openstack
import pytest

from k1prov.lab import Lab
from k1prov.lab import procs
from lab_fixture import start_lab

pytestmark = pytest.mark.lab

PORT_OFFSET = 21000
NODES = 3


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    lab = start_lab(tmp_path_factory.mktemp("labsvc"), nodes=NODES, port_offset=PORT_OFFSET)
    yield lab
    lab.down()


def sdk(lab: Lab) -> openstack.connection.Connection:
    s = lab.settings
    return openstack.connect(auth_type="none", baremetal_endpoint_override=s.ironic_url,
                             image_endpoint_override=s.glance_url, baremetal_api_version="1.x",
                             load_yaml_config=False, load_envvars=False)


def ipmitool(lab: Lab, port: int, *args: str, password: str | None = None,
             user: str | None = None) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ["PATH"],
           "IPMI_PASSWORD": lab.bmc_password() if password is None else password}
    return subprocess.run(["ipmitool", "-I", "lanplus", "-H", "127.0.0.1", "-p", str(port),
                           "-U", user or lab.settings.bmc_username, "-E", "-N", "1", "-R", "2",
                           *args], env=env, capture_output=True, text=True, timeout=30)


def bmc_state(lab: Lab, port: int) -> dict:
    return json.loads((lab.settings.bmc_state_dir / f"{port}.json").read_text())


def pids(lab: Lab) -> dict[str, int]:
    return {s.name: s.pid for s in lab.status().services}


def no_process_in_group(pgid: int, *, timeout: float = 5.0) -> bool:
    """Nobody alive in the group. Processes of the group that outlived their parent are
    reaped by init, which may take a moment; so poll briefly. A zombie waiting for that
    (pgrep lists it; this machine's init reaps slowly in a busy whole run) runs nothing
    and holds nothing, so it does not count."""
    deadline = time.monotonic() + timeout
    while procs.group_members(pgid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def test_every_service_runs_and_answers(lab):
    st = lab.status()
    assert st.ok, st.to_dict()
    assert {s.name for s in st.services} == {"ironic", "glance", "http", "bmcsim", "reconciler"}
    for s in st.services:
        assert (lab.settings.run_dir / f"{s.name}.pid").read_text() == f"{s.pid}\n"
        assert s.rss_kib and s.rss_kib > 1000
    text = json.dumps(st.to_dict())
    assert lab.bmc_password() not in text
    for log in lab.settings.log_dir.glob("*.log"):
        assert lab.bmc_password() not in log.read_text(errors="replace"), log


def test_sdk_sees_ironic_and_glance(lab):
    conn = sdk(lab)
    assert list(conn.baremetal.nodes()) == []
    payload = b"\0" * 4096
    image = conn.image.create_image(name="k1prov-lab-test", data=io.BytesIO(payload),
                                    disk_format="raw", container_format="bare",
                                    visibility="public", tags=["k1prov-test"])
    try:
        listed = {i.name: i for i in conn.image.images()}
        assert listed["k1prov-lab-test"].status == "active"
        assert listed["k1prov-lab-test"].visibility == "public"
        assert listed["k1prov-lab-test"].size == len(payload)
    finally:
        conn.image.delete_image(image)


def test_ironic_powers_a_node_through_the_bmc_simulator(lab):
    """fake-hardware + ipmitool: Ironic's power actions cross real IPMI to the simulator."""
    s = lab.settings
    port = s.bmc_base_port + 1
    conn = sdk(lab)
    node = conn.baremetal.create_node(
        name="labsvc-node", driver="fake-hardware", power_interface="ipmitool",
        management_interface="ipmitool", deploy_interface="fake", boot_interface="fake",
        driver_info={"ipmi_address": "127.0.0.1", "ipmi_port": port,
                     "ipmi_username": s.bmc_username, "ipmi_password": lab.bmc_password()})
    try:
        node = conn.baremetal.set_node_provision_state(node, "manage", wait=True, timeout=120)
        assert node.provision_state == "manageable"
        conn.baremetal.set_node_power_state(node, "power on", wait=True, timeout=60)
        assert bmc_state(lab, port)["power"] == "on"
        conn.baremetal.set_node_boot_device(node, "pxe")
        assert bmc_state(lab, port)["boot_device"] == "network"
        conn.baremetal.set_node_power_state(node, "power off", wait=True, timeout=60)
        assert bmc_state(lab, port)["power"] == "off"
    finally:
        conn.baremetal.delete_node(node)


def test_clouds_entry_works_for_the_sdk_and_the_cli(lab, monkeypatch):
    s = lab.settings
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(s.clouds_yaml_path))
    conn = openstack.connect(cloud=s.cloud_name)
    assert list(conn.baremetal.nodes()) == []
    assert isinstance(list(conn.image.images()), list)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env["OS_CLIENT_CONFIG_FILE"] = str(s.clouds_yaml_path)
    out = subprocess.run([str(s.venv / "bin" / "openstack"), "--os-cloud", s.cloud_name,
                          "baremetal", "node", "list", "-f", "json"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == []


def test_ipmitool_power_changes_the_state_file(lab):
    port = lab.settings.bmc_base_port + 2
    assert ipmitool(lab, port, "power", "on").returncode == 0
    on = bmc_state(lab, port)
    assert on["power"] == "on"
    assert "Chassis Power is on" in ipmitool(lab, port, "power", "status").stdout
    assert ipmitool(lab, port, "power", "off").returncode == 0
    off = bmc_state(lab, port)
    assert off["power"] == "off" and off["changed"] >= on["changed"]
    assert "Chassis Power is off" in ipmitool(lab, port, "power", "status").stdout
    # The other machines did not move.
    assert bmc_state(lab, lab.settings.bmc_base_port)["power"] == "off"


def test_wrong_credentials_are_refused(lab):
    port = lab.settings.bmc_base_port
    before = bmc_state(lab, port)
    bad_pw = ipmitool(lab, port, "power", "on", password="not-the-password")
    assert bad_pw.returncode != 0
    assert "Unable to establish IPMI v2 / RMCP+ session" in bad_pw.stderr
    bad_user = ipmitool(lab, port, "power", "on", user="intruder")
    assert bad_user.returncode != 0
    assert bmc_state(lab, port) == before


def test_up_again_is_a_fast_no_op(lab):
    before = pids(lab)
    t0 = time.monotonic()
    status = lab.up()
    elapsed = time.monotonic() - t0
    assert status.ok
    assert pids(lab) == before
    assert elapsed < 3.0, f"no-op up took {elapsed:.2f} s"


def test_more_nodes_restart_only_the_simulator(lab):
    before = pids(lab)
    port = lab.settings.bmc_base_port + 2
    assert ipmitool(lab, port, "power", "on").returncode == 0
    bigger = Lab(dataclasses.replace(lab.settings, nodes=NODES + 1))
    assert bigger.up().ok
    after = pids(bigger)
    # The simulator serves one BMC more; the reconciler maps BMC ports to nodes, so it
    # follows the count too. Ironic, Glance and the HTTP server are not touched.
    moved = {"bmcsim", "reconciler"}
    assert all(after[k] != before[k] for k in moved)
    assert {k: v for k, v in after.items() if k not in moved} == \
        {k: v for k, v in before.items() if k not in moved}
    new_port = lab.settings.bmc_base_port + NODES
    assert "Chassis Power is off" in ipmitool(lab, new_port, "power", "status").stdout
    # A simulator restart keeps the machines' power state, as a BMC reboot does.
    assert "Chassis Power is on" in ipmitool(lab, port, "power", "status").stdout
    assert ipmitool(lab, port, "power", "off").returncode == 0


def test_down_leaves_no_process_and_frees_the_ports(lab):
    s = lab.settings
    groups = [svc.pid for svc in lab.status().services]
    members = [m for g in groups for m in procs.group_members(g)]
    assert len(members) >= 4
    t0 = time.monotonic()
    lab.down()
    assert time.monotonic() - t0 < 30
    for g in groups:
        assert no_process_in_group(g), f"process group {g} still has processes"
    assert not any(procs.process_alive(m) for m in members)
    assert subprocess.run(["pgrep", "-f", str(s.root)], capture_output=True).returncode == 1
    ports = [("tcp", s.ironic_port), ("tcp", s.glance_port), ("tcp", s.http_port)] + \
        [("udp", p) for p in range(s.bmc_base_port, s.bmc_base_port + NODES + 1)]
    assert all(procs.port_free(proto, port) for proto, port in ports)
    assert list(s.run_dir.glob("*.pid")) == []
    assert not lab.status().ok
    lab.down()                                      # idempotent
