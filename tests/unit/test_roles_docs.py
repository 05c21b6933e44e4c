"""docs/inventory.md documents every key of the roles settings table, with its default."""
from __future__ import annotations

import json
import re
from pathlib import Path

from k1prov.roles import docs
from k1prov.roles import role_settings as settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "inventory.md"


def documented_rows() -> dict[str, dict[str, str]]:
    """section -> key -> default cell, read from the tables in the document."""
    text = DOC.read_text()
    block = text.split(docs.BEGIN, 1)[1].split(docs.END, 1)[0]
    rows: dict[str, dict[str, str]] = {}
    section = ""
    for line in block.splitlines():
        heading = re.match(r"^#### `roles\.(\w+)`$", line)
        if heading:
            section = heading.group(1)
            rows[section] = {}
            continue
        row = re.match(r"^\| `(\w+)` \| (.*?) \| (.*) \|$", line)
        if row and section:
            rows[section][row.group(1)] = row.group(2)
    return rows


def test_every_roles_key_is_documented_with_its_default():
    rows = documented_rows()
    assert set(rows) == set(settings.ROLE_KEYS)
    for section, defaults in settings.DEFAULTS.items():
        assert list(rows[section]) == list(defaults), section
        for key, value in defaults.items():
            # Text as written, everything else as YAML/JSON would write it; "" as a dash.
            want = "—" if value == "" else f"`{value}`" if isinstance(value, str) else f"`{json.dumps(value)}`"
            assert rows[section][key] == want, (section, key)


def test_the_generated_tables_in_the_document_are_current():
    text = DOC.read_text()
    assert docs.replace_tables(text) == text, \
        "docs/inventory.md is stale: run python -m k1prov.roles.docs docs/inventory.md"


def test_every_key_has_a_description_in_settings_py():
    comments = docs.key_comments()
    missing = [f"{section}.{key}" for section, defaults in settings.DEFAULTS.items() for key in defaults
               if key != "source" and not comments[section].get(key)]
    assert not missing, f"add a comment next to these keys in k1prov/roles/role_settings.py: {missing}"


def test_spark_and_zookeeper_default_versions_reach_the_document():
    rows = documented_rows()
    assert rows["spark"]["version"] == f"`{settings.SPARK_DEFAULTS['version']}`" == "`3.5.9`"
    assert rows["zookeeper"]["version"] == "`3.8.4`"
    assert rows["mesos"]["roles"] == "`[]`"


def test_check_mode_reports_a_stale_document(tmp_path, capsys):
    stale = tmp_path / "inventory.md"
    stale.write_text(DOC.read_text().replace("| `clock_check` |", "| `clock_chek` |"))
    assert docs.main(["--check", str(stale)]) == 1
    assert "stale" in capsys.readouterr().err
    assert docs.main([str(stale)]) == 0
    assert docs.main(["--check", str(stale)]) == 0


def test_the_generator_the_stale_message_names_runs(tmp_path):
    # In a fresh interpreter k1prov.roles is imported first (python -m), which once met an
    # import cycle through k1prov.inventory that the test session's import order hid.
    import subprocess
    import sys
    copy = tmp_path / "inventory.md"
    copy.write_text(DOC.read_text())
    done = subprocess.run([sys.executable, "-m", "k1prov.roles.docs", str(copy)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert copy.read_text() == DOC.read_text()
