"""k1prov.lab.venv: when the lab venv is (re)installed, and how failures read."""
from __future__ import annotations

from pathlib import Path

import pytest

from k1prov.errors import LabError
from k1prov.lab import venv


def fake_venv(tmp_path: Path, python_script: str) -> Path:
    """A "venv" whose python is a shell script (so ensure_venv skips `python -m venv`)."""
    v = tmp_path / "venv"
    (v / "bin").mkdir(parents=True)
    py = v / "bin" / "python"
    py.write_text("#!/bin/sh\n" + python_script)
    py.chmod(0o755)
    return v


def test_ready_only_with_matching_hash(tmp_path):
    req = tmp_path / "req.txt"
    req.write_text("ironic==39.0.0\n")
    v = fake_venv(tmp_path, "exit 0\n")
    assert not venv.venv_ready(v, req)
    assert venv.ensure_venv(v, req, timeout=10) is True
    assert venv.venv_ready(v, req)
    assert venv.ensure_venv(v, req, timeout=10) is False
    req.write_text("ironic==40.0.0\n")                 # requirements changed -> reinstall
    assert not venv.venv_ready(v, req)


def test_pip_failure_carries_the_tail_of_its_output(tmp_path):
    req = tmp_path / "req.txt"
    req.write_text("x\n")
    v = fake_venv(tmp_path, "for i in $(seq 1 100); do echo line$i; done\n"
                            "echo 'ERROR: No matching distribution found for x'; exit 1\n")
    with pytest.raises(LabError) as exc:
        venv.ensure_venv(v, req, timeout=10)
    msg = str(exc.value)
    assert "pip install failed (exit 1)" in msg
    assert "No matching distribution found for x" in msg
    assert "line100" in msg and "line1\n" not in msg
    assert not venv.venv_ready(v, req)


def test_install_is_bounded_by_the_timeout(tmp_path):
    req = tmp_path / "req.txt"
    req.write_text("x\n")
    v = fake_venv(tmp_path, "echo downloading; sleep 30\n")
    with pytest.raises(LabError, match="lab_install timeout"):
        venv.ensure_venv(v, req, timeout=0.5)


def test_hash_depends_on_content(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_text("glance==33.0.0\n")
    b.write_text("glance==33.0.1\n")
    assert venv.requirements_hash(a) != venv.requirements_hash(b)
