"""`inventory check` refuses what render, images register and deploy refuse, located.

Every file in inventories/ is checked and rendered (a new example is covered by adding it);
broken variants of a shipped example are refused by `inventory check` with the same
"FILE:LINE: field: reason" line that the later verb gives.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from k1prov.cli import app
from k1prov.errors import InventoryError
from k1prov.inventory import load_inventory
from k1prov import preflight

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "inventories").glob("*.yaml"))
runner = CliRunner()


def _error_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, output
    return lines[0]


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_checks_and_renders(example, tmp_path, lab_operator_key):
    checked = runner.invoke(app, ["inventory", "check", str(example)])
    assert checked.exit_code == 0, checked.output
    rendered = runner.invoke(app, ["render", "-i", str(example), "-o", str(tmp_path / "out")])
    assert rendered.exit_code == 0, rendered.output
    assert (tmp_path / "out" / "plan.json").is_file()


def _variant(tmp_path: Path, old: str, new: str, name: str = "devtower.yaml") -> Path:
    text = (REPO / "inventories" / name).read_text()
    assert old in text, old
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / name
    path.write_text(text.replace(old, new))
    return path


def _line_of(path: Path, needle: str) -> int:
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(needle)


def test_a_tarball_without_sha512_is_refused_by_check_at_the_spark_line(tmp_path):
    path = _variant(tmp_path, "source: preinstalled}", "source: tarball}")
    line = _line_of(path, "spark: {version:")
    expected = (f"error: {path}:{line}: roles.spark.sha512: source tarball needs the "
                "release's sha512 (128 hex digits)")
    checked = runner.invoke(app, ["inventory", "check", str(path)])
    assert checked.exit_code == 2
    assert _error_line(checked.output) == expected
    rendered = runner.invoke(app, ["render", "-i", str(path), "-o", str(tmp_path / "out")])
    assert rendered.exit_code == 2
    assert _error_line(rendered.output) == expected
    assert "Traceback" not in checked.output + rendered.output


@pytest.mark.parametrize("old,new,field,needle", [
    ("source: preinstalled}", 'source: tarball, sha512: "abc"}', "roles.spark.sha512", "spark: {"),
    ("roles:\n", "roles:\n  templates_dir: no-such-dir\n", "roles.templates_dir", "templates_dir:"),
    ("name: debian-12-k1prov\n    file: ../images/debian-12-k1prov.qcow2",
     "name: no-such-catalog-image", "images.user.name", "no-such-catalog-image"),
    ("    disk_format: qcow2\n", "    disk_format: qcow2\n    bypass_glance: true\n",
     "images.user.bypass_glance", "bypass_glance"),
    ('  public_keys:\n    - "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDevTowerExampleKeyReplaceMeWithYourOwn0000 '
     'operator@devtower"\n', "", "ssh.public_keys", "ssh:"),
], ids=["sha512-format", "templates-dir", "catalog-name", "bypass-needs-url", "no-ssh-key"])
def test_later_refusals_are_located_by_check(tmp_path, old, new, field, needle):
    path = _variant(tmp_path, old, new)
    result = runner.invoke(app, ["inventory", "check", str(path)])
    assert result.exit_code == 2, result.output
    line = _line_of(path, needle)
    assert re.match(rf"error: {re.escape(str(path))}:{line}: {re.escape(field)}: ",
                    _error_line(result.output)), result.output


def test_the_verbs_run_the_same_checks(tmp_path):
    """render (roles), images register (images) and deploy refuse through the functions
    check_all runs: the same error, line and all."""
    from types import SimpleNamespace

    from k1prov.deploy import deploy
    from k1prov.image_registration import register_images
    from k1prov.roles import render_all

    roles = load_inventory(_variant(tmp_path / "a", "source: preinstalled}", "source: tarball}"))
    with pytest.raises(InventoryError) as by_check:
        preflight.check_all(roles)
    with pytest.raises(InventoryError) as by_render:
        render_all(roles)
    assert str(by_check.value) == str(by_render.value)

    images = load_inventory(_variant(tmp_path / "b", "name: debian-12-k1prov\n    file: ../images/debian-12-k1prov.qcow2",
                                     "name: no-such-catalog-image"))
    with pytest.raises(InventoryError) as by_check:
        preflight.check_all(images)
    with pytest.raises(InventoryError) as by_register:
        register_images(SimpleNamespace(inventory=images))   # refused before Glance
    assert str(by_check.value) == str(by_register.value)

    no_key = load_inventory(_variant(tmp_path / "c", '  public_keys:\n    - "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5'
                                     'AAAAIDevTowerExampleKeyReplaceMeWithYourOwn0000 operator@devtower"\n', ""))
    with pytest.raises(InventoryError) as by_check:
        preflight.check_all(no_key)
    with pytest.raises(InventoryError) as by_deploy:
        deploy(SimpleNamespace(inventory=no_key))
    assert str(by_check.value) == str(by_deploy.value)


def test_a_missing_image_file_is_a_located_warning_not_a_refusal(tmp_path):
    path = tmp_path / "devtower.yaml"
    path.write_text((REPO / "inventories" / "devtower.yaml").read_text())
    result = runner.invoke(app, ["inventory", "check", str(path)])
    assert result.exit_code == 0
    line = _line_of(path, "file: ../images/debian-12-k1prov.qcow2")
    assert f"warning: {path}:{line}: images.user.file: " in result.output
    assert "does not exist (yet)" in result.output


def test_check_writes_nothing(lab_operator_key):
    """The lab's stand-in deploy kernel/ramdisk are generated by `images register`, not
    by a check (and a lab image not built yet is not an error before `lab up`)."""
    lab_dir = Path("~/.local/share/k1prov/lab").expanduser()
    before = sorted(p for p in lab_dir.rglob("*"))
    result = runner.invoke(app, ["inventory", "check", str(REPO / "inventories" / "lab.yaml")])
    assert result.exit_code == 0, result.output
    assert sorted(p for p in lab_dir.rglob("*")) == before


@pytest.mark.parametrize("old,new,field,reason", [
    ("agent_flags: {launcher: posix}", "agent_flags: {launcher: posix, no_such_flag: 1}",
     "roles.mesos.agent_flags.no_such_flag", "not a flag of mesos-agent 1.12.0"),
    ("master_flags: {allocation_interval: 100ms}", "master_flags: {allocation_intervall: 100ms}",
     "roles.mesos.master_flags.allocation_intervall",
     "not a flag of mesos-master 1.12.0 (did you mean 'allocation_interval'?)"),
    # An agent flag given to the masters: the agents know it, the masters do not.
    ("master_flags: {allocation_interval: 100ms}", "master_flags:\n      launcher: posix",
     "roles.mesos.master_flags.launcher", "not a flag of mesos-master 1.12.0"),
], ids=["unknown-agent-flag", "master-flag-typo", "agent-flag-on-master"])
def test_an_unknown_mesos_flag_is_refused_at_its_line_by_check_and_render(tmp_path, lab_operator_key,
                                                                         old, new, field, reason):
    """The agent (or master) would refuse to start on the host: the flag is checked against
    the lists of the Mesos version the inventory installs (k1prov/roles/mesos-flags), before
    anything is contacted."""
    path = _variant(tmp_path, old, new, name="lab.yaml")
    line = _line_of(path, new.splitlines()[-1])          # the flag's own line
    for argv in (["inventory", "check", str(path)], ["render", "-i", str(path), "-o", str(tmp_path / "out")]):
        result = runner.invoke(app, argv)
        assert result.exit_code == 2, result.output
        error = _error_line(result.output)
        assert error.startswith(f"error: {path}:{line}: {field}: {reason}"), error
    assert not (tmp_path / "out").exists()
