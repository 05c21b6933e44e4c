"""Shell completion: `k1prov --install-completion` and node names after --limit.

The callback is tested directly, then through Typer's completion protocol (the
_K1PROV_COMPLETE environment variable the installed script sets), then in a real bash
that sources the script `--install-completion bash` wrote and calls its function.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from k1prov.cli.completion import node_names

REPO = Path(__file__).resolve().parents[2]
K1PROV = Path(sys.executable).with_name("k1prov")
LAB = REPO / "inventories" / "lab.yaml"


def _ctx(inventory):
    return SimpleNamespace(params={"inventory": inventory})


def test_node_names_from_the_inventory(lab_operator_key):
    assert node_names(_ctx(str(LAB)), "") == ["lab01", "lab02", "lab03", "lab04", "lab05"]
    assert node_names(_ctx(str(LAB)), "lab0") == ["lab01", "lab02", "lab03", "lab04", "lab05"]
    assert node_names(_ctx(str(LAB)), "lab03") == ["lab03"]
    # A comma-separated list completes its last item and skips the names already given.
    assert node_names(_ctx(str(LAB)), "lab01,lab0") == ["lab01,lab02", "lab01,lab03",
                                                       "lab01,lab04", "lab01,lab05"]


def test_no_or_broken_inventory_completes_nothing_silently(tmp_path, capsys):
    assert node_names(_ctx(None), "") == []
    assert node_names(_ctx(str(tmp_path / "missing.yaml")), "") == []
    broken = tmp_path / "broken.yaml"
    broken.write_text("cluster: [\n")
    assert node_names(_ctx(str(broken)), "") == []
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, **extra}
    env["PATH"] = f"{K1PROV.parent}{os.pathsep}{env.get('PATH', '')}"
    return env


@pytest.mark.parametrize("words,cword,expected", [
    ("k1prov run -i {inv} --limit lab0", 5, ["lab01", "lab02", "lab03", "lab04", "lab05"]),
    ("k1prov deploy -i {inv} --limit lab01,lab0", 5, ["lab01,lab02", "lab01,lab03",
                                                      "lab01,lab04", "lab01,lab05"]),
    ("k1prov configure -i {inv} -l lab04", 5, ["lab04"]),
    ("k1prov reimage -i {inv} lab0", 4, ["lab01", "lab02", "lab03", "lab04", "lab05"]),
    ("k1prov run -i {inv} --group spark-w", 5, ["spark-worker"]),
    ("k1prov configure -i {inv} --roles zookeeper,mesos", 5,
     ["zookeeper,mesos-master", "zookeeper,mesos-agent"]),
])
def test_typer_completion_protocol(lab_operator_key, words, cword, expected):
    result = subprocess.run([str(K1PROV)], capture_output=True, text=True, timeout=60,
                            env=_env(COMP_WORDS=words.format(inv=LAB), COMP_CWORD=str(cword),
                                     _K1PROV_COMPLETE="complete_bash"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == expected


def test_install_completion_then_a_real_bash_completes_node_names(lab_operator_key):
    # The test session's HOME (tests/conftest.py): lab.yaml reads the stand-in key there.
    home = Path(os.environ["HOME"])
    # Typer finds the shell to install for in the process tree (shellingham), as it does for
    # an operator typing this in bash; pytest may run under no shell at all (CI, nohup), so
    # the command runs from a bash (`; true`: so that bash does not exec it in its place).
    installed = subprocess.run(["bash", "--norc", "--noprofile", "-c", f"'{K1PROV}' --install-completion; true"],
                               capture_output=True, text=True, timeout=60, env=_env(HOME=str(home)))
    assert installed.returncode == 0, installed.stderr
    script = home / ".bash_completions" / "k1prov.sh"
    assert script.is_file()
    assert f"source '{script}'" in (home / ".bashrc").read_text()
    # What bash does on TAB: set COMP_WORDS/COMP_CWORD and call the registered function.
    probe = (f"source ~/.bashrc; complete -p k1prov >/dev/null || exit 9; "
             f"COMP_WORDS=(k1prov run -i {LAB} --limit lab0); COMP_CWORD=5; "
             "_k1prov_completion k1prov; printf '%s\\n' \"${COMPREPLY[@]}\"")
    result = subprocess.run(["bash", "--norc", "--noprofile", "-c", probe], capture_output=True,
                            text=True, timeout=60, env=_env(HOME=str(home)))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["lab01", "lab02", "lab03", "lab04", "lab05"]
