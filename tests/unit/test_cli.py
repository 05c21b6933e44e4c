"""The CLI shell: exit codes, one-line errors, JSON output, no secrets, no tracebacks."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from k1prov.cli import app
from k1prov.inventory import load_inventory

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()

BAD_IP = """\
cluster: x
cloud: {ironic_url: "http://127.0.0.1:1"}
nodes:
  - name: a
    bmc: {address: 10.0.0.300, username: u, password: {env: P}}
    macs: ["52:54:00:00:00:01"]
    address: 10.0.0.1
"""

# Complete enough for deploy (a user image, an SSH key): `inventory check` refuses less.
INLINE = """\
cluster: x
cloud: {ironic_url: "http://127.0.0.1:1"}
ssh: {public_keys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTheInventoryCheckOnly0000000 t"]}
images: {user: {name: debian-12-generic}}
nodes:
  - name: a
    bmc: {address: 10.0.0.3, username: u, password: "s3cr3t-Pa55"}
    macs: ["52:54:00:00:00:01"]
    address: 10.0.0.1
"""


def test_inventory_check_error_is_one_located_line_and_exit_2(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text(BAD_IP)
    result = runner.invoke(app, ["inventory", "check", str(f)])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == [f"error: {f}:5: nodes[0].bmc.address: '10.0.0.300' is not an IP address"]
    assert "Traceback" not in result.output


def test_enroll_with_bad_inventory_changes_nothing_and_exits_2(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text(BAD_IP)
    # The cloud URL is a closed port: reaching it would fail differently (exit 1).
    result = runner.invoke(app, ["nodes", "enroll", "-i", str(f)])
    assert result.exit_code == 2
    assert "nodes[0].bmc.address" in result.output


def test_inline_password_warns_and_never_prints(tmp_path):
    f = tmp_path / "inline.yaml"
    f.write_text(INLINE)
    result = runner.invoke(app, ["inventory", "check", str(f), "--json"])
    assert result.exit_code == 0
    assert "s3cr3t-Pa55" not in result.output
    data = json.loads(result.stdout)
    assert data["nodes"][0]["password"] == "inline:***"
    assert any("inline password" in w for w in data["warnings"])


def test_lab_yaml_needs_the_lab_key_and_says_which_file(lab_operator_key):
    pub = lab_operator_key
    pub.unlink()
    result = runner.invoke(app, ["inventory", "check", str(REPO / "inventories/lab.yaml")])
    assert result.exit_code == 2
    assert "ssh.public_key_files[0]: cannot read" in result.output and str(pub) in result.output


def test_examples_check_clean(lab_operator_key):
    for name in ("lab.yaml", "lab-standalone.yaml", "devtower.yaml", "large.yaml"):
        result = runner.invoke(app, ["inventory", "check", str(REPO / "inventories" / name), "--json"])
        assert result.exit_code == 0, (name, result.output)
    large = json.loads(runner.invoke(app, ["inventory", "check", str(REPO / "inventories/large.yaml"),
                                           "--json"]).stdout)
    assert len(large["nodes"]) == 503


def test_lab_yaml_without_the_published_mesos_build_is_refused_with_the_file_named(lab_operator_key):
    sums = Path("~/.local/share/k1prov/lab/http/mesos/SHA512SUMS").expanduser()
    sums.unlink()
    result = runner.invoke(app, ["inventory", "check", str(REPO / "inventories/lab.yaml")])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {REPO / 'inventories/lab.yaml'}:"), lines
    assert f"roles.mesos.sha512_file: cannot read {sums}" in lines[0]
    # The standalone inventory needs no build.
    ok = runner.invoke(app, ["inventory", "check", str(REPO / "inventories/lab-standalone.yaml")])
    assert ok.exit_code == 0, ok.output


@pytest.mark.parametrize("name,mesos", [("lab.yaml", True), ("lab-standalone.yaml", False)])
def test_lab_yaml_matches_the_default_lab(tmp_path, lab_operator_key, name, mesos):
    """inventories/lab.yaml (lab-standalone.yaml) describes exactly the machines a default
    `lab up` serves, with Mesos (without), as `lab inventory` writes them."""
    from k1prov.inventory import parse_inventory
    from k1prov.lab import LabSettings

    settings = LabSettings(root=Path("~/.local/share/k1prov/lab").expanduser(), venv=tmp_path)
    from k1prov.lab import Lab
    generated = parse_inventory(Lab(settings).inventory_yaml(mesos=mesos), path=tmp_path / "gen.yaml")
    committed = load_inventory(REPO / "inventories" / name)

    def shape(inv):
        return [(n.name, n.bmc.address, n.bmc.port, n.bmc.username, n.macs, n.address, n.roles,
                 n.driver, n.interfaces, str(Path(n.bmc.password.file).expanduser()))
                for n in inv.nodes]

    assert shape(committed) == shape(generated)
    assert committed.roles == generated.roles
    assert committed.images == generated.images
    assert committed.ssh.user == generated.ssh.user
    assert Path(committed.ssh.private_key).expanduser() == Path(generated.ssh.private_key)
    assert committed.cloud.ironic_url == generated.cloud.ironic_url
    assert committed.cloud.glance_url == generated.cloud.glance_url
    assert committed.cluster == generated.cluster
    assert bool(committed.with_role("mesos-master")) is mesos


def test_limit_unknown_node_is_an_input_error(tmp_path, lab_operator_key):
    result = runner.invoke(app, ["nodes", "enroll", "-i", str(REPO / "inventories/lab.yaml"),
                                 "--limit", "lab01,nosuch"])
    assert result.exit_code == 2
    assert "nosuch" in result.output


@pytest.mark.parametrize("verb", [["cluster", "up"], ["cluster", "rebuild"], ["reimage", "lab04"]])
def test_role_settings_configure_would_refuse_are_refused_before_ironic_is_contacted(
        tmp_path, lab_operator_key, monkeypatch, verb):
    """The lab's inventory with Mesos on a lab without a published build: refused at once
    (exit 2, one line naming the file), not after enrolling and deploying every node."""
    monkeypatch.setenv("K1PROV_STATE_DIR", str(tmp_path / "state"))
    Path("~/.local/share/k1prov/lab/http/mesos/SHA512SUMS").expanduser().unlink()
    inv = tmp_path / "lab.yaml"
    # Ironic where nothing answers: reaching it would be another error (exit 1).
    inv.write_text((REPO / "inventories/lab.yaml").read_text().replace(
        "ironic_url: http://10.251.0.1:6385", "ironic_url: http://127.0.0.1:9"))
    result = runner.invoke(app, [*verb, "-i", str(inv)])
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines()[-1].startswith(f"error: {inv}:"), result.output
    assert "roles.mesos.sha512_file: cannot read" in result.output
    assert not (tmp_path / "state" / "lab" / "runs").exists()
