"""The lab, started once per test session on its own ports and directory.

Ports are offset from the defaults so that a lab an operator runs on this machine
(`k1prov lab up`) is never touched by the tests. K1PROV_TEST_LAB_PORT_OFFSET,
K1PROV_TEST_LAB_BRIDGE and K1PROV_TEST_LAB_CIDR move the session's lab elsewhere
(e.g. to run the lab's own test files next to another session: offset 30000, bridge
k1pipa0, 10.253.0.1/24); the tests that deploy through it take their addresses from
its subnet. K1PROV_TEST_LAB_AUTH (none, http_basic, keystone; default keystone, as `lab up`) is the
session lab's auth mode: with auth, the tests' inventories name its clouds.yaml entry.
K1PROV_TEST_LAB_HOST_INIT (plain, systemd; default: LabSettings') is what its hosts, and the
hosts tests boot themselves (labhosts.booted_hosts), run as PID 1.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from k1prov.lab import Lab, LabSettings
from lab_fixture import session_network, session_port_offset
from labhosts import lab_host_init

# Simulated machines in the test lab: enough for every integration test's nodes.
TEST_LAB_NODES = 40


@pytest.fixture(scope="session")
def lab(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (network namespaces, mounts)")
    root = tmp_path_factory.mktemp("lab")
    offset = session_port_offset()
    settings = LabSettings(root=root, venv=Path(os.environ["K1PROV_LAB_VENV"]),
                           ironic_port=6385 + offset, glance_port=9292 + offset,
                           http_port=8088 + offset, bmc_base_port=6230 + offset,
                           keystone_port=5000 + offset,
                           nodes=TEST_LAB_NODES, clouds_yaml=root / "clouds.yaml",
                           **session_network(),
                           auth=os.environ.get("K1PROV_TEST_LAB_AUTH", "keystone"),
                           host_init=lab_host_init())
    the_lab = Lab(settings)
    try:
        the_lab.up()
    except BaseException:
        # A lab that failed half-way (a port taken, a service that never answered) must not
        # leave its started services holding the test ports for the next session.
        the_lab.down()
        raise
    # With auth, inventories name the lab's clouds.yaml entry (labhosts.lab_inventory_text):
    # k1prov, in-process or as a command, reads the lab's file.
    saved = os.environ.get("OS_CLIENT_CONFIG_FILE")
    if settings.auth != "none":
        os.environ["OS_CLIENT_CONFIG_FILE"] = str(settings.clouds_yaml_path)
    yield the_lab
    # As it was: later tests (the unit tests run after these) read no lab's clouds.yaml.
    if saved is not None:
        os.environ["OS_CLIENT_CONFIG_FILE"] = saved
    else:
        os.environ.pop("OS_CLIENT_CONFIG_FILE", None)
    the_lab.down()
    # Powered down, every machine has released its loop device; its disk file (a GB or so
    # once an image is on it) goes with the session, which pytest's tmp_path keeps.
    from k1prov.lab.disk import loops_of

    disks = sorted(settings.machines_dir.glob("*/disk.img"))
    left = [loop for disk in disks for loop in loops_of(disk)]
    shutil.rmtree(settings.machines_dir, ignore_errors=True)
    assert not left, f"lab machines left loop devices attached: {left}"
