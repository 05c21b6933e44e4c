"""The lab, started once per test session on its own ports and directory.

Ports are offset from the defaults so that a lab an operator runs on this machine
(`k1prov lab up`) is never touched by the tests.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from k1prov.lab import Lab, LabSettings

# Simulated machines in the test lab: enough for every integration test's nodes.
TEST_LAB_NODES = 40


@pytest.fixture(scope="session")
def lab(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (network namespaces, mounts)")
    root = tmp_path_factory.mktemp("lab")
    settings = LabSettings(root=root, venv=Path(os.environ["K1PROV_LAB_VENV"]),
                           ironic_port=16385, glance_port=19292, http_port=18088,
                           bmc_base_port=16230, nodes=TEST_LAB_NODES,
                           clouds_yaml=root / "clouds.yaml")
    the_lab = Lab(settings)
    the_lab.up()
    yield the_lab
    the_lab.down()
    # Powered down, every machine has released its loop device; its disk file (a GB or so
    # once an image is on it) goes with the session, which pytest's tmp_path keeps.
    from k1prov.lab.disk import loops_of

    disks = sorted(settings.machines_dir.glob("*/disk.img"))
    left = [loop for disk in disks for loop in loops_of(disk)]
    shutil.rmtree(settings.machines_dir, ignore_errors=True)
    assert not left, f"lab machines left loop devices attached: {left}"
