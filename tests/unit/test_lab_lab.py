"""k1prov.lab.lab without services: status of a stopped lab, down, port conflicts, password.

The services themselves are exercised in tests/integration/test_lab_services.py.
"""
from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest

from k1prov.errors import LabError
from k1prov.lab import Lab, LabSettings
from k1prov.lab.config import REQUIREMENTS_FILE
from k1prov.lab.venv import MARKER, requirements_hash


def installed_venv(tmp_path: Path) -> Path:
    """A venv that ensure_venv considers up to date (nothing gets installed)."""
    v = tmp_path / "venv"
    (v / "bin").mkdir(parents=True)
    (v / "bin" / "python").symlink_to(sys.executable)
    (v / MARKER).write_text(requirements_hash(REQUIREMENTS_FILE) + "\n")
    return v


def free_port(kind=socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_status_of_a_lab_never_started(tmp_path):
    st = Lab(LabSettings(root=tmp_path / "lab", venv=tmp_path / "v", nodes=3)).status()
    assert not st.ok
    d = st.to_dict()
    # The default lab authenticates: Keystone is one of its services.
    assert [s["name"] for s in d["services"]] == ["bmcsim", "http", "keystone", "glance", "ironic", "reconciler"]
    assert all(s["running"] is False and s["pid"] is None for s in d["services"])
    assert "3 BMCs" not in d["services"][0]["detail"]


def test_down_of_a_lab_never_started_is_a_no_op(tmp_path):
    lb = Lab(LabSettings(root=tmp_path / "lab", venv=tmp_path / "v",
                         ironic_port=free_port(), glance_port=free_port(),
                         http_port=free_port(), bmc_base_port=free_port(socket.SOCK_DGRAM),
                         nodes=1))
    lb.down()
    lb.down()


def test_up_refuses_a_port_taken_by_another_program(tmp_path):
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        taken = other.getsockname()[1]
        s = LabSettings(root=tmp_path / "lab", venv=installed_venv(tmp_path),
                        ironic_port=free_port(), glance_port=taken, http_port=free_port(),
                        bmc_base_port=free_port(socket.SOCK_DGRAM), nodes=1,
                        clouds_yaml=tmp_path / "clouds.yaml")
        with pytest.raises(LabError, match=rf"tcp port {taken} .*glance.* in use by pid {os.getpid()} \("):
            Lab(s).up()
    # Nothing was started and no clouds.yaml entry written for a lab that is not up.
    assert list((tmp_path / "lab" / "run").glob("*.pid")) == []
    assert not (tmp_path / "clouds.yaml").exists()


def test_bmc_password_is_generated_once_and_private(tmp_path):
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        s = LabSettings(root=tmp_path / "lab", venv=installed_venv(tmp_path),
                        ironic_port=other.getsockname()[1], glance_port=free_port(),
                        http_port=free_port(), nodes=1)
        lb = Lab(s)
        with pytest.raises(LabError):
            lb.up()                         # stops at the port check, after the password
        first = lb.bmc_password()
        with pytest.raises(LabError):
            lb.up()
    assert lb.bmc_password() == first
    assert 12 <= len(first) <= 20           # IPMI 2.0 passwords are at most 20 bytes
    assert os.stat(s.bmc_password_file).st_mode & 0o777 == 0o600


def test_bmc_password_before_up_is_a_lab_error(tmp_path):
    with pytest.raises(LabError, match="lab up"):
        Lab(LabSettings(root=tmp_path / "lab", venv=tmp_path / "v")).bmc_password()


def test_a_listener_on_the_bridge_address_keeps_the_bridge(tmp_path):
    """`down` leaves a shared bridge alone while another lab's Ironic listens on its address."""
    from k1prov.lab.lab import _listening_on

    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        assert _listening_on("127.0.0.1")
    assert not _listening_on("10.255.255.254")


def test_conductors_make_ironic_a_database_conductors_and_an_api(tmp_path):
    s = LabSettings(root=tmp_path / "lab", venv=tmp_path / "v", nodes=3, conductors=2)
    st = Lab(s).status()
    assert [x.name for x in st.services] == ["bmcsim", "http", "keystone", "mariadb", "glance", "ironic-conductor-1",
                                             "ironic-conductor-2", "ironic-api", "reconciler"]
    assert not st.ok


def test_down_stops_the_conductors_an_earlier_up_started(tmp_path):
    """A lab brought down with fewer conductors (or none) than it runs still stops them all:
    `down` goes by the services recorded in run/, not only by its settings."""
    import json
    import subprocess

    s = LabSettings(root=tmp_path / "lab", venv=tmp_path / "v", nodes=1,
                    ironic_port=free_port(), glance_port=free_port(), http_port=free_port(),
                    bmc_base_port=free_port(socket.SOCK_DGRAM))
    s.run_dir.mkdir(parents=True)
    # A stand-in for conductor 3 (a process of ours, recorded as procs.start records one).
    proc = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        start_time = int(Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
        (s.run_dir / "ironic-conductor-3.json").write_text(json.dumps(
            {"pid": proc.pid, "start_time": start_time, "fingerprint": "x"}))
        Lab(s).down()
        assert proc.wait(timeout=10) is not None
    finally:
        proc.kill()
        proc.wait()
