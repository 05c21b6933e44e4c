"""k1prov.host_layout: the host's paths in one place, read by the code and the templates."""
from __future__ import annotations

import re
from pathlib import Path

from k1prov import cluster
from k1prov.configure_plan import status_command
from k1prov.host_layout import HOST, HostLayout

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"


def test_paths_and_names():
    assert (HOST.state_dir, HOST.lib_dir, HOST.log_dir) == \
        ("/var/lib/k1prov", "/usr/local/lib/k1prov", "/var/log/k1prov")
    assert HOST.role_hash("zookeeper") == "/var/lib/k1prov/roles/zookeeper.sha256"
    assert HOST.run_dir == "/var/lib/k1prov/run"
    assert HOST.launcher("mesos-agent") == "/usr/local/lib/k1prov/mesos-agent-run"
    assert HOST.service_log("spark-master") == "/var/log/k1prov/spark-master.log"


def test_every_path_is_safe_unquoted_in_a_shell_default():
    """The templates put them into "${VAR:-PATH}" as they are."""
    for name, value in vars(HostLayout()).items():
        assert re.fullmatch(r"[/A-Za-z0-9._-]+", value), name


def test_no_template_and_no_module_spells_the_state_dir_itself():
    for path in TEMPLATES.rglob("*.j2"):
        assert HOST.state_dir not in path.read_text(), path
    # configure's status read gives the scripts' default the same way.
    assert f'K1PROV_STATE_DIR="${{K1PROV_STATE_DIR:-{HOST.state_dir}}}"' in \
        status_command("", {"zookeeper": "zookeeper"})


def test_stop_services_uses_the_layout():
    assert f"{HOST.run_dir}/*.pid" in cluster.STOP_SERVICES
    assert f"rm -f {HOST.roles_dir}/*.sha256" in cluster.STOP_SERVICES
    assert f"systemctl stop '{HOST.unit_prefix}*'" in cluster.STOP_SERVICES
