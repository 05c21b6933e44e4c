"""images register, deploy, reimage, undeploy against the lab: real Ironic and Glance, the
BMC simulators over IPMI, the `direct` deploy by the real ironic-python-agent in each lab
machine (PXE config -> agent -> image and config drive on the machine's loop disk ->
power off -> disk boot), reached with OpenSSH and the pinned known_hosts
(StrictHostKeyChecking=yes)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
from image_fixture import lab_image_path
from labhosts import (deploy_settings_text, fenced_caps_left, host_fence_command, lab_connection,
                      lab_inventory_text, lab_ip, node_range_text, openssh, this_machine_disk,
                      write_deploy_inputs)
from typer.testing import CliRunner

from k1prov import glance
from k1prov.cli import app
from k1prov.fanout import Status
from k1prov.hostkeys import KEY_NAME
from k1prov.inventory import load_inventory
from k1prov.lab import disk as disks
from k1prov.lab.machine import machine_name
from k1prov.lab.netns import netns_exists, netns_name
from k1prov.verb_report import EXIT_OK
from k1prov.provisioner import Provisioner

pytestmark = pytest.mark.lab

CLUSTER = "deploytest"
NAMES = ["dpl01", "dpl02", "dpl03"]
# BMC ports lab base + 30.. and addresses .131..: no other test uses them (the lab's DHCP
# pool for network-booting machines is .191 and up).
BMC_OFFSET = 30
FIRST_ADDRESS = 131
SSH_TIMEOUT = 30.0
# How long Ironic may take to record a power action the host already shows.
POWER_STATE_TIMEOUT = 30.0
HOST_GONE_TIMEOUT = 20.0


def _inventory(s, d: Path, *, user_image: str, user_extra: str = "", name: str = "deploy.yaml") -> Path:
    inv = d / name
    nodes = node_range_text("dpl[01-03]", first_bmc_port=s.bmc_base_port + BMC_OFFSET,
                            first_address=lab_ip(s, FIRST_ADDRESS))
    inv.write_text(lab_inventory_text(
        s, cluster=CLUSTER, nodes=nodes,
        deploy=deploy_settings_text(d, image_prefix="dpl", user_image=user_image, user_extra=user_extra)))
    return inv


@pytest.fixture(scope="module")
def env(lab, tmp_path_factory):
    d = tmp_path_factory.mktemp("deploy")
    write_deploy_inputs(d, key_comment=CLUSTER)
    image = lab_image_path()
    inv_path = _inventory(lab.settings, d, user_image=str(image))
    state = d / "state"
    conn = lab_connection(lab.settings)
    prov = Provisioner(load_inventory(inv_path), state_root=state)
    enrolled = prov.enroll()
    assert enrolled.exit_code() == EXIT_OK, [o.error for o in enrolled.failed]
    try:
        yield {"dir": d, "inv": inv_path, "state": state, "conn": conn, "prov": prov, "lab": lab,
               "image": image}
    finally:
        Provisioner(load_inventory(inv_path), state_root=state).undeploy()
        Provisioner(load_inventory(inv_path), state_root=state).delete_nodes()
        for img in glance.list_own_images(conn, CLUSTER):
            conn.image.delete_image(img.id, ignore_missing=True)


def _ssh(env, name: str, command: str, *, check: bool = True) -> subprocess.CompletedProcess:
    node = env["prov"].inventory.node(name)
    result = openssh(env["dir"] / "id_ed25519", env["state"] / CLUSTER / "known_hosts", node.address,
                     command, timeout=SSH_TIMEOUT)
    if check:
        assert result.returncode == 0, (name, result.stderr)
    return result


def _machines(env) -> list[str]:
    """The lab machines behind NAMES (a machine is named after its BMC port)."""
    base = env["lab"].settings.bmc_base_port + BMC_OFFSET
    return [machine_name(base + i) for i in range(len(NAMES))]


def _cli(env, *args: str):
    return CliRunner().invoke(app, [*args, "-i", str(env["inv"]), "--json"],
                              env={"K1PROV_STATE_DIR": str(env["state"])})


def test_images_register_then_rerun_reuses_everything(env):
    t0 = time.monotonic()
    first = _cli(env, "images", "register")
    first_s = time.monotonic() - t0
    assert first.exit_code == 0, first.output
    data = json.loads(first.stdout)
    rows = {row["node"]: row for row in data["nodes"]}
    images = {k: v for k, v in rows.items() if k.startswith("image:")}
    assert set(images) == {"image:dpl-deploy-kernel", "image:dpl-deploy-ramdisk", "image:dpl-lab-image"}
    assert {r["action"] for r in images.values()} == {"uploaded"}
    kernel_id = images["image:dpl-deploy-kernel"]["uuid"]
    ramdisk_id = images["image:dpl-deploy-ramdisk"]["uuid"]
    for name in NAMES:
        assert rows[name]["action"] == "updated"
        node = env["conn"].baremetal.find_node(name)
        assert node.driver_info["deploy_kernel"] == kernel_id
        assert node.driver_info["deploy_ramdisk"] == ramdisk_id
        # Patched, not replaced: the BMC settings are still there.
        assert node.driver_info["ipmi_address"] == "127.0.0.1"

    t0 = time.monotonic()
    again = _cli(env, "images", "register")
    again_s = time.monotonic() - t0
    assert again.exit_code == 0, again.output
    rows2 = {row["node"]: row for row in json.loads(again.stdout)["nodes"]}
    assert {r["action"] for r in rows2.values()} == {"unchanged"}
    assert rows2["image:dpl-lab-image"]["uuid"] == images["image:dpl-lab-image"]["uuid"]
    assert len(glance.list_own_images(env["conn"], CLUSTER, name="dpl-lab-image")) == 1
    print(f"\nimages register: first run {first_s:.1f} s, re-run {again_s:.1f} s")


def test_checksum_mismatch_is_rejected_and_nothing_uploaded(env):
    bad = _inventory(env["lab"].settings, env["dir"], user_image=str(env["dir"] / "deploy.kernel"),
                     user_extra=', checksum: "sha256:' + "0" * 64 + '"', name="bad.yaml")
    text = bad.read_text().replace("name: dpl-lab-image", "name: dpl-bad-image")
    bad.write_text(text)
    report = Provisioner(load_inventory(bad), state_root=env["state"]).register_images()
    row = next(o for o in report.outcomes if o.node == "image:dpl-bad-image")
    assert row.status is Status.FAILED and "checksum mismatch" in row.error
    assert glance.list_own_images(env["conn"], CLUSTER, name="dpl-bad-image") == []


def test_deploy_three_nodes_ssh_with_pinned_keys(env):
    report = env["prov"].deploy()
    rows = {o.node: o for o in report.outcomes}
    for name in NAMES:
        assert rows[name].status is Status.OK, (name, rows[name].error)
        assert rows[name].action == "deployed"
        assert rows[name].provision_state == "active"
    # Ironic powers the machine on (boot device disk) after the agent's disk write; a host
    # can answer SSH a moment before Ironic has recorded that power action (seen under load).
    deadline = time.monotonic() + POWER_STATE_TIMEOUT
    while True:
        power = {n.name: n.power_state for n in env["conn"].baremetal.nodes(details=True)
                 if n.name in NAMES}
        if set(power.values()) == {"power on"} or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert power == {name: "power on" for name in NAMES}
    for name in NAMES:
        out = _ssh(env, name, "hostname; cat /etc/ssh/ssh_host_ed25519_key.pub")
        hostname, key_line = out.stdout.splitlines()[:2]
        assert hostname == name
        pinned = (env["state"] / CLUSTER / "hostkeys" / name / (KEY_NAME + ".pub")).read_text().split()
        assert key_line.split()[:2] == pinned[:2]
    # The known_hosts pin is real: one node's address with another node's key is refused.
    kh = env["state"] / CLUSTER / "known_hosts"
    lines = kh.read_text().splitlines()
    swapped = env["dir"] / "swapped_known_hosts"
    swapped.write_text(lines[0].split()[0] + " " + " ".join(lines[1].split()[1:]) + "\n")
    first = env["prov"].inventory.node(NAMES[0])
    refused = subprocess.run(
        ["ssh", "-F", "/dev/null", "-i", str(env["dir"] / "id_ed25519"), "-o", "BatchMode=yes",
         "-o", f"UserKnownHostsFile={swapped}", "-o", "StrictHostKeyChecking=yes",
         f"root@{first.address}", "true"], capture_output=True, text=True, timeout=SSH_TIMEOUT)
    assert refused.returncode != 0 and "host key" in refused.stderr.lower()

    again = env["prov"].deploy()
    assert {o.action for o in again.outcomes} == {"unchanged"}
    assert again.exit_code() == EXIT_OK


def test_a_deployed_host_cannot_reach_its_own_disk_this_machines_or_power(env):
    """Root on a host booted from its lab machine's disk (the role scripts' view): no
    capability over disks, power, clock or mounts, and no block device, not even the
    machine's own disk and root partition (the boot mounted that before the fence)."""
    s = env["lab"].settings
    machine = _machines(env)[0]
    (loop,) = disks.loops_of(s.machines_dir / machine / "disk.img")
    parts = disks.partition_devices(loop)
    state = json.loads((s.root / "boot" / "hosts" / machine / "state.json").read_text())
    assert "devices:/k1prov-hosts-" in Path(f"/proc/{state['pid']}/cgroup").read_text()
    major, minor = this_machine_disk()
    rdev = os.stat(loop).st_rdev
    targets = [f"b:{major}:{minor}", f"b:{os.major(rdev)}:{os.minor(rdev)}"]
    targets += [f"b:{a}:{b}" for a, b in parts.values()]
    probe = json.loads(_ssh(env, NAMES[0], host_fence_command(*targets)).stdout)
    assert fenced_caps_left(probe) == []
    assert probe["mknod"] == {target: "EPERM" for target in targets}
    assert probe["reboot"] == "EPERM" and probe["settimeofday"] == "EPERM" and probe["clock_settime"] == "EPERM"
    assert probe["remount_sys"] != 0 and probe["sys_mount"] == ["ro"] and probe["core_pattern"] == "EROFS"


def test_reimage_one_node_wipes_it_and_keeps_the_others(env):
    for name in NAMES[:2]:
        _ssh(env, name, "echo before > /root/marker")
    key_before = (env["state"] / CLUSTER / "hostkeys" / NAMES[0] / KEY_NAME).read_text()
    report = env["prov"].reimage([NAMES[0]])
    (row,) = report.outcomes
    assert row.status is Status.OK, row.error
    assert row.action == "rebuilt" and row.provision_state == "active"
    gone = _ssh(env, NAMES[0], "test -e /root/marker", check=False)
    assert gone.returncode == 1, gone.stderr
    assert _ssh(env, NAMES[1], "cat /root/marker").stdout.strip() == "before"
    # Host keys are kept: the same pinned key still works (the _ssh above checked it).
    assert (env["state"] / CLUSTER / "hostkeys" / NAMES[0] / KEY_NAME).read_text() == key_before


def test_undeploy_removes_hosts_and_nodes_become_available(env):
    """Issue 21: with Ironic's automated cleaning (on in the lab) undeploy boots the agent
    once more on each machine, which erases the partition table the deploy wrote
    (erase_devices_metadata), all inside undeploy's one wait for available."""
    s = env["lab"].settings
    disk_files = [s.machines_dir / m / "disk.img" for m in _machines(env)]
    assert all(disks.mbr_partitions(f) for f in disk_files)
    t0 = time.monotonic()
    result = _cli(env, "undeploy")
    print(f"\nundeploy with automated cleaning, {len(NAMES)} nodes at once: {time.monotonic() - t0:.1f} s")
    assert result.exit_code == 0, result.output
    rows = {row["node"]: row for row in json.loads(result.stdout)["nodes"]}
    for name in NAMES:
        assert rows[name]["action"] == "undeployed"
        assert rows[name]["provision_state"] == "available"
    assert [disks.mbr_partitions(f) for f in disk_files] == [[]] * len(NAMES)
    machines = _machines(env)
    deadline = time.monotonic() + HOST_GONE_TIMEOUT
    while any(netns_exists(netns_name(m)) for m in machines) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(netns_exists(netns_name(m)) for m in machines)
    first = env["prov"].inventory.node(NAMES[0])
    with pytest.raises(OSError):
        socket.create_connection((first.address, 22), timeout=2).close()


def test_nodes_clean_erases_the_disk_metadata_through_the_agent(env):
    """Issue 21: `nodes clean --erase metadata` is Ironic's manual cleaning: the real agent
    boots on the machine and wipes its partition table (written here on the powered-off
    machines' disks: undeploy's automated cleaning erased the deploy's); the node ends
    available, the others untouched."""
    s = env["lab"].settings
    cleaned, kept = [s.machines_dir / m / "disk.img" for m in _machines(env)[:2]]
    for disk in (cleaned, kept):
        subprocess.run(["sfdisk", "--no-reread", "--no-tell-kernel", "-q", str(disk)],
                       input="2048,8192,83\n", text=True, check=True, capture_output=True, timeout=60)
    assert disks.mbr_partitions(cleaned) and disks.mbr_partitions(kept)
    t0 = time.monotonic()
    result = _cli(env, "nodes", "clean", "--limit", NAMES[0], "--erase", "metadata")
    took = time.monotonic() - t0
    print(f"\nnodes clean --erase metadata, one node: {took:.1f} s")
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)["nodes"]
    assert (row["node"], row["action"], row["provision_state"]) == (NAMES[0], "cleaned (metadata)", "available")
    assert disks.mbr_partitions(cleaned) == []
    assert disks.mbr_partitions(kept)
    phases = [p["phase"] for p in json.loads(result.stdout)["phases"]]
    assert phases == ["manage", "clean", "provide"]
    # Not deployed again by the way: the machine is off once Ironic is done with it.
    assert env["conn"].baremetal.get_node(row["uuid"]).power_state == "power off"

