"""The rendered role scripts as shell: syntax, shellcheck, quoting of hostile
values, OS detection, and idempotency of a real run against a fake host layout."""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from k1prov.inventory.model import Bmc, Cloud, Inventory, Node, SecretRef
from k1prov.roles import render_all, render_host
from k1prov.roles.render import environment, template_dirs

SHA = "ab" * 64
needs_shellcheck = pytest.mark.skipif(shutil.which("shellcheck") is None, reason="apt package shellcheck")


def node(name, index, address, roles, **extra):
    return Node(name=name, index=index, bmc=Bmc("127.0.0.1", 6230 + index, "admin", SecretRef(env="BMC_PW")),
                macs=(f"52:54:00:00:00:{index:02x}",), address=address, roles=roles, **extra)


def inventory(roles: dict, *, mesos: bool = True, path: Path = Path("/inv/site.yaml")) -> Inventory:
    master_roles = ("zookeeper", "mesos-master", "spark-master") if mesos else ("zookeeper", "spark-master")
    agent_roles = ("mesos-agent", "spark-worker") if mesos else ("spark-worker",)
    nodes = [node(f"m{i + 1}", i, f"10.0.0.{i + 1}", master_roles) for i in range(3)]
    nodes += [node(f"a{i + 1}", 3 + i, f"10.0.1.{i + 1}", agent_roles,
                   properties={"cpus": 8, "memory_mb": 32768, "cpu_arch": "x86_64"}) for i in range(2)]
    nodes.append(node("c1", 5, "10.0.2.1", ("spark-client",)))
    return Inventory(path=path, cluster="lab", cloud=Cloud(), nodes=tuple(nodes), roles=roles)


VARIANTS = {
    "defaults-on-mesos": ({"spark": {"source": "preinstalled"}}, True),
    "tarballs-standalone": ({"zookeeper": {"source": "tarball", "sha512": SHA, "heap_mb": 512},
                             "spark": {"source": "tarball", "sha512": SHA, "worker_cores": 2}}, False),
    "mirrors": ({"zookeeper": {"source": "mirror", "mirror": "http://mirror/apache", "sha512": SHA},
                 "mesos": {"source": "mirror", "repo_url": "http://mirror/mesos", "roles": ["a", "b"],
                           "weights": {"a": 2}, "isolation": "posix/cpu,posix/mem",
                           "master_flags": {"max_agent_ping_timeouts": 10}},
                 "spark": {"source": "mirror", "mirror": "http://mirror/apache", "sha512": SHA,
                           "mode": "fine", "executor_uri": "http://mirror/spark.tgz"}}, True),
    "preinstalled": ({"zookeeper": {"source": "preinstalled", "server_script": "/srv/zk/bin/zkServer.sh"},
                      "mesos": {"source": "preinstalled"}, "common": {"java_install": False, "clock_check": False},
                      "spark": {"source": "preinstalled", "spark_home": "/usr/lib/python3/dist-packages/pyspark"}},
                     True),
}


def shell_texts(inv: Inventory, *, every_host: bool = False):
    """(label, text) of each role's script and embedded shell files; hosts of one role
    differ only in addresses, so one host per role unless every_host."""
    seen: set[tuple[str, str]] = set()
    for host, scripts in render_all(inv).items():
        for s in scripts:
            for path, text in [("", s.text)] + [(f.path, f.text) for f in s.files]:
                if path and not path.endswith(("-run", ".sh")):
                    continue
                if (s.role, path) in seen and not every_host:
                    continue
                seen.add((s.role, path))
                yield f"{host}/{s.filename}:{path or 'script'}", text


def test_every_shell_template_quotes_every_value():
    """Static half of the quoting rule: in shell templates, every expression ends in `| shq`."""
    expression = re.compile(r"\{\{(.*?)\}\}", re.S)
    checked = 0
    for root in template_dirs(inventory({})):
        for path in sorted(root.rglob("*.sh.j2")):
            for expr in expression.findall(path.read_text()):
                checked += 1
                assert re.search(r"\|\s*shq\s*$", expr), f"{path}: {{{{{expr}}}}} is not passed through shq"
    assert checked > 50


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_bash_syntax_of_every_rendered_script(variant):
    roles, mesos = VARIANTS[variant]
    for label, text in shell_texts(inventory(roles, mesos=mesos), every_host=True):
        proc = subprocess.run(["bash", "-n"], input=text, text=True, capture_output=True, timeout=30)
        assert proc.returncode == 0, f"{label}: {proc.stderr}"


@needs_shellcheck
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_shellcheck_clean(variant, tmp_path):
    roles, mesos = VARIANTS[variant]
    files = []
    for i, (label, text) in enumerate(shell_texts(inventory(roles, mesos=mesos))):
        path = tmp_path / f"{i:03d}.sh"
        path.write_text(text)
        files.append((label, path))
    proc = subprocess.run(["shellcheck", "-S", "warning", "-s", "bash", *[str(p) for _, p in files]],
                          capture_output=True, text=True, timeout=120)
    names = {str(p): label for label, p in files}
    assert proc.returncode == 0, "\n".join(names.get(line.split()[1], line) if line.startswith("In ") else line
                                           for line in proc.stdout.splitlines())


# ---- OS detection, from the rendered common functions ----

OS_RELEASES = {
    "debian": ('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n'
               "VERSION_CODENAME=bookworm\n", "debian|debian|bookworm"),
    "ubuntu": ('NAME="Ubuntu"\nVERSION_ID="24.04"\nID=ubuntu\nID_LIKE=debian\nUBUNTU_CODENAME=noble\n'
               "VERSION_CODENAME=noble\n", "debian|ubuntu|noble"),
    "rocky": ('NAME="Rocky Linux"\nID="rocky"\nID_LIKE="rhel centos fedora"\nVERSION_ID="9.4"\n', "rhel|rocky|"),
    "alma": ('NAME="AlmaLinux"\nID="almalinux"\nID_LIKE="rhel centos fedora"\nVERSION_ID="8.10"\n',
             "rhel|almalinux|"),
    "rhel": ("NAME='Red Hat Enterprise Linux'\nID='rhel'\nVERSION_ID='9.4'\n", "rhel|rhel|"),
}


def detect(tmp_path: Path, os_release: str | None):
    base = environment(inventory({})).get_template("common/base.sh.j2").render()
    (tmp_path / "base.sh").write_text(base)
    release = tmp_path / "os-release"
    if os_release is not None:
        release.write_text(os_release)
    script = 'K1_ROLE=test; source "$1"; k1_detect_os; echo "$K1_OS_FAMILY|$K1_OS_ID|$K1_OS_CODENAME"'
    return subprocess.run(["bash", "-c", script, "detect", str(tmp_path / "base.sh")], capture_output=True,
                          text=True, timeout=30, env={**os.environ, "K1PROV_OS_RELEASE": str(release)},
                          cwd=tmp_path)


@pytest.mark.parametrize("name", sorted(OS_RELEASES))
def test_os_detection(name, tmp_path):
    text, expected = OS_RELEASES[name]
    proc = detect(tmp_path, text)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == expected


@pytest.mark.parametrize("text,shown", [
    ('ID=opensuse-leap\nVERSION_ID="15.5"\nID_LIKE="suse opensuse"\n', "unsupported OS: opensuse-leap 15.5"),
    ("ID=arch\n", "unsupported OS: arch"),
    ("", "unsupported OS: unknown"),
    ('ID=debian\nVERSION_ID="13"\n', "no VERSION_CODENAME"),
])
def test_unsupported_os_fails_clearly(text, shown, tmp_path):
    proc = detect(tmp_path, text)
    assert proc.returncode == 1
    assert shown in proc.stderr


def test_missing_os_release_fails_clearly(tmp_path):
    proc = detect(tmp_path, None)
    assert proc.returncode == 1 and "unsupported OS: cannot read" in proc.stderr


def test_os_release_is_read_not_executed(tmp_path):
    proc = detect(tmp_path, f"ID=$(touch {tmp_path}/pwned)\nVERSION_ID=1\n")
    assert proc.returncode == 1 and "unsupported OS" in proc.stderr
    assert not (tmp_path / "pwned").exists()


# ---- hostile role settings ----

def hostile_inventory(tmp_path: Path) -> tuple[Inventory, dict[str, str], Path]:
    pwned = tmp_path / "pwned"
    evil = f"$(touch {pwned}) `touch {pwned}` 'single' \"double\" ; touch {pwned} #"
    values = {
        "data_dir": f"/var/lib/zk {evil}",
        "cluster": f"lab {evil}",
        "spark_home": str(tmp_path / "spark home"),
        "executor_uri": f"http://repo/spark.tgz?{evil}",
        "worker_memory": f"1g {evil}",
        "flag": f"x {evil}",
        "attr": f"r 1 $(touch {pwned}) 'q'",
    }
    roles = {
        "zookeeper": {"data_dir": values["data_dir"], "server_script": str(tmp_path / "bin" / "fake-server")},
        "mesos": {"cluster_name": values["cluster"], "master_flags": {"offer_timeout": values["flag"]},
                  "attributes": {"rack": values["attr"]},
                  "master_binary": str(tmp_path / "bin" / "fake-server"),
                  "agent_binary": str(tmp_path / "bin" / "fake-server")},
        "spark": {"source": "preinstalled", "spark_home": values["spark_home"], "mode": "coarse",
                  "executor_uri": values["executor_uri"], "worker_memory": values["worker_memory"],
                  "defaults": {"spark.evil": evil}},
    }
    return inventory(roles), values, pwned


def settings_of(text: str, tmp_path: Path) -> dict[str, str]:
    """Runs a rendered script up to its settings (K1PROV_SHOW_SETTINGS=1: no side effects)."""
    proc = subprocess.run(["bash", "-s"], input=text.encode(), capture_output=True, timeout=30, cwd=tmp_path,
                          env={**os.environ, "K1PROV_SHOW_SETTINGS": "1"})
    assert proc.returncode == 0, proc.stderr
    fields = proc.stdout.decode().split("\0")[:-1]
    return dict(zip(fields[::2], fields[1::2]))


def test_hostile_values_stay_data_in_scripts(tmp_path):
    inv, values, pwned = hostile_inventory(tmp_path)
    rendered = render_all(inv)
    for host, scripts in rendered.items():
        for s in scripts:
            got = settings_of(s.text, tmp_path)
            assert not pwned.exists(), f"{host}/{s.filename} executed an inventory value"
            # Every embedded file reaches the host byte for byte.
            embedded = {f.text for f in s.files}
            assert embedded <= set(got.values()), f"{host}/{s.filename}"
    zk = settings_of(rendered["m1"][0].text, tmp_path)
    assert zk["CFG_DATA_DIR"] == values["data_dir"]
    assert f"dataDir={values['data_dir']}\n" in zk["CFG_ZOO_CFG"]
    spark = settings_of(rendered["a1"][1].text, tmp_path)
    assert spark["CFG_SPARK_HOME"] == values["spark_home"]
    assert f"spark.executor.uri {values['executor_uri']}\n" in spark["CFG_SPARK_DEFAULTS"]


def fake_binary(tmp_path: Path) -> Path:
    """Stands in for mesos-master, zkServer.sh, spark-daemon.sh: prints its argv, NUL-separated."""
    path = tmp_path / "bin" / "fake-server"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('#!/usr/bin/env bash\nprintf "%s\\0" "$@"\n')
    path.chmod(0o755)
    return path


def run_launcher(text: str, tmp_path: Path) -> list[str]:
    proc = subprocess.run(["bash", "-s"], input=text.encode(), capture_output=True, timeout=30, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.decode().split("\0")[:-1]


def test_hostile_values_reach_daemons_as_single_arguments(tmp_path):
    inv, values, pwned = hostile_inventory(tmp_path)
    fake = fake_binary(tmp_path)
    sbin = Path(values["spark_home"]) / "sbin"
    sbin.mkdir(parents=True)
    shutil.copy(fake, sbin / "spark-daemon.sh")
    rendered = render_all(inv)
    launchers = {f.path.rsplit("/", 1)[1]: f.text for scripts in rendered.values() for s in scripts
                 for f in s.files if f.path.endswith("-run")}
    master = run_launcher(launchers["mesos-master-run"], tmp_path)
    assert f"--cluster={values['cluster']}" in master
    assert f"--offer_timeout={values['flag']}" in master
    agent = run_launcher(rendered["a1"][0].files[0].text, tmp_path)
    assert f"--attributes=arch:x86_64;rack:{values['attr']}" in agent
    zk = run_launcher(launchers["zookeeper-run"], tmp_path)
    assert zk == ["start-foreground", "/etc/zookeeper/conf/zoo.cfg"]
    dispatcher = run_launcher(launchers["spark-dispatcher-run"], tmp_path)
    assert dispatcher[:2] == ["start", "org.apache.spark.deploy.mesos.MesosClusterDispatcher"]
    assert not pwned.exists()
    # spark-env.sh is sourced by Spark's own scripts: it must stay data too.
    env_text = next(f.text for f in rendered["a1"][1].files if f.path.endswith("spark-env.sh"))
    (tmp_path / "spark-env.sh").write_text(env_text)
    out = subprocess.run(["bash", "-c", 'source "$1"; printf "%s" "$SPARK_LOCAL_IP"', "x",
                          str(tmp_path / "spark-env.sh")], capture_output=True, text=True, timeout=30)
    assert out.stdout == "10.0.1.1" and not pwned.exists()


@needs_shellcheck
def test_hostile_scripts_pass_shellcheck(tmp_path):
    inv, _values, _pwned = hostile_inventory(tmp_path)
    for i, (label, text) in enumerate(shell_texts(inv)):
        (tmp_path / f"{i:03d}.sh").write_text(text)
    proc = subprocess.run(["shellcheck", "-S", "warning", "-s", "bash", *sorted(map(str, tmp_path.glob("*.sh")))],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout


# ---- a real run: twice the same, then a config change ----

def fake_host(tmp_path: Path) -> dict[str, str]:
    """Environment that points every host path the scripts use into tmp_path."""
    (tmp_path / "os-release").write_text("ID=debian\nVERSION_ID=12\nVERSION_CODENAME=bookworm\n")
    return {**os.environ, "K1PROV_OS_RELEASE": str(tmp_path / "os-release"),
            "K1PROV_STATE_DIR": str(tmp_path / "state"), "K1PROV_LIB_DIR": str(tmp_path / "lib"),
            "K1PROV_LOG_DIR": str(tmp_path / "log"), "K1PROV_INIT": "none", "K1PROV_START_GRACE": "0.3",
            "K1PROV_HOSTS_FILE": str(tmp_path / "hosts")}


def run_script(text: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-s"], input=text, capture_output=True, text=True, timeout=60, env=env, cwd=cwd)


def pid_of(tmp_path: Path, service: str) -> int:
    return int((tmp_path / "state" / "run" / f"{service}.pid").read_text().split()[0])


@pytest.fixture
def services(tmp_path):
    yield tmp_path
    for pidfile in (tmp_path / "state" / "run").glob("*.pid"):
        pid = int(pidfile.read_text().split()[0])
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.mark.skipif(os.geteuid() != 0, reason="the scripts chown to root")
@pytest.mark.skipif(shutil.which("java") is None, reason="the scripts check for a Java runtime")
def test_zookeeper_script_is_idempotent_and_restarts_only_on_change(services):
    tmp_path = services
    server = tmp_path / "zk" / "bin" / "zkServer.sh"
    server.parent.mkdir(parents=True)
    # Stands in for ZooKeeper: stays up until killed.
    server.write_text("#!/usr/bin/env bash\nexec sleep 300\n")
    server.chmod(0o755)

    def render(tick: int) -> str:
        roles = {"zookeeper": {"source": "preinstalled", "server_script": str(server), "user": "root",
                               "conf_dir": str(tmp_path / "conf"), "data_dir": str(tmp_path / "data dir"),
                               "data_log_dir": str(tmp_path / "txlog"), "log_dir": str(tmp_path / "zklog"),
                               "tick_time": tick},
                 "common": {"clock_check": False}, "spark": {"source": "preinstalled"}}
        inv = inventory(roles)
        return render_host(inv, inv.node("m2"))[0]

    env = fake_host(tmp_path)
    script = render(2000)
    first = run_script(script.text, env, tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines()[-1] == "K1PROV-RESULT changed=1"
    assert (tmp_path / "data dir" / "myid").read_text() == "2\n"
    assert "server.3=10.0.0.3:2888:3888" in (tmp_path / "conf" / "zoo.cfg").read_text()
    assert (tmp_path / "state" / "roles" / "zookeeper.sha256").read_text().strip() == script.sha256
    pid = pid_of(tmp_path, "zookeeper")
    zoo_mtime = (tmp_path / "conf" / "zoo.cfg").stat().st_mtime_ns

    second = run_script(script.text, env, tmp_path)
    assert second.returncode == 0, second.stderr
    assert second.stdout.splitlines()[-1] == "K1PROV-RESULT changed=0"
    assert pid_of(tmp_path, "zookeeper") == pid
    assert (tmp_path / "conf" / "zoo.cfg").stat().st_mtime_ns == zoo_mtime

    changed = render(3000)
    third = run_script(changed.text, env, tmp_path)
    assert third.returncode == 0, third.stderr
    assert third.stdout.splitlines()[-1] == "K1PROV-RESULT changed=1"
    assert "tickTime=3000" in (tmp_path / "conf" / "zoo.cfg").read_text()
    assert pid_of(tmp_path, "zookeeper") != pid
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1][:3]
    assert (tmp_path / "state" / "roles" / "zookeeper.sha256").read_text().strip() == changed.sha256

    # A process that died is started again (and that counts as a change).
    os.killpg(pid_of(tmp_path, "zookeeper"), signal.SIGKILL)
    fourth = run_script(changed.text, env, tmp_path)
    assert fourth.stdout.splitlines()[-1] == "K1PROV-RESULT changed=1", fourth.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="the scripts chown to root")
@pytest.mark.skipif(shutil.which("java") is None, reason="the scripts check for a Java runtime")
def test_existing_myid_is_never_rewritten(services):
    tmp_path = services
    server = tmp_path / "zkServer.sh"
    server.write_text("#!/usr/bin/env bash\nexec sleep 300\n")
    server.chmod(0o755)
    data = tmp_path / "data"
    data.mkdir()
    (data / "myid").write_text("9\n")
    roles = {"zookeeper": {"source": "preinstalled", "server_script": str(server), "user": "root",
                           "conf_dir": str(tmp_path / "conf"), "data_dir": str(data),
                           "data_log_dir": str(tmp_path / "txlog"), "log_dir": str(tmp_path / "zklog")},
             "common": {"clock_check": False}, "spark": {"source": "preinstalled"}}
    inv = inventory(roles)
    proc = run_script(render_host(inv, inv.node("m1"))[0].text, fake_host(tmp_path), tmp_path)
    assert proc.returncode == 1
    assert "holds myid 9 but the inventory gives m1 myid 1" in proc.stderr
    assert (data / "myid").read_text() == "9\n"
    # Debian's placeholder text is not an id: it gets replaced.
    (data / "myid").write_text("replace this text with the cluster-unique zookeeper's ID\n")
    proc = run_script(render_host(inv, inv.node("m1"))[0].text, fake_host(tmp_path), tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (data / "myid").read_text() == "1\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="the scripts chown to root")
@pytest.mark.skipif(shutil.which("java") is None, reason="the scripts check for a Java runtime")
def test_spark_master_script_runs_spark_daemon_and_is_idempotent(services):
    tmp_path = services
    home = tmp_path / "pyspark"
    (home / "bin").mkdir(parents=True)
    (home / "sbin").mkdir()
    (home / "bin" / "spark-submit").write_text("#!/bin/sh\n")
    (home / "bin" / "spark-submit").chmod(0o755)
    # Stands in for spark-daemon.sh: records how it was called, then stays up.
    (home / "sbin" / "spark-daemon.sh").write_text(
        '#!/usr/bin/env bash\nprintf "%s\\n" "$SPARK_NO_DAEMONIZE $SPARK_PID_DIR $*" >> "$SPARK_LOG_DIR/calls"\n'
        "exec sleep 300\n")
    (home / "sbin" / "spark-daemon.sh").chmod(0o755)
    roles = {"spark": {"source": "preinstalled", "spark_home": str(home), "user": "root",
                       "pid_dir": str(tmp_path / "spark-run"), "log_dir": str(tmp_path / "spark-log"),
                       "work_dir": str(tmp_path / "spark-work")},
             "common": {"clock_check": False}}
    inv = inventory(roles, mesos=False)
    script = render_host(inv, inv.node("m1"))[1]
    assert script.role == "spark-master"
    env = fake_host(tmp_path)
    first = run_script(script.text, env, tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines()[-1] == "K1PROV-RESULT changed=1"
    second = run_script(script.text, env, tmp_path)
    assert second.stdout.splitlines()[-1] == "K1PROV-RESULT changed=0", second.stderr
    calls = (tmp_path / "spark-log" / "calls").read_text().splitlines()
    assert calls == [f"1 {tmp_path}/spark-run start org.apache.spark.deploy.master.Master 1 "
                     "--host 10.0.0.1 --port 7077 --webui-port 8080"]
    defaults = (home / "conf" / "spark-defaults.conf").read_text()
    assert "spark.master spark://10.0.0.1:7077,10.0.0.2:7077,10.0.0.3:7077" in defaults
    # The client role only installs configuration (here c1's, over m1's): no daemon, idempotent.
    client = render_host(inv, inv.node("c1"))[0]
    assert client.role == "spark-client"
    assert run_script(client.text, env, tmp_path).stdout.splitlines()[-1] == "K1PROV-RESULT changed=1"
    assert run_script(client.text, env, tmp_path).stdout.splitlines()[-1] == "K1PROV-RESULT changed=0"
    assert "SPARK_LOCAL_IP=10.0.2.1" in (home / "conf" / "spark-env.sh").read_text()
    assert sorted(p.name for p in (tmp_path / "state" / "run").iterdir()) == ["spark-master.pid"]


# ---- /etc/hosts: every member resolves every other member's name ----

def cluster_hosts(tmp_path: Path, block: str, cluster: str = "lab") -> tuple[str, str]:
    """Runs k1_cluster_hosts against tmp_path/hosts; returns (file text, "CHANGED CONFIG_CHANGED")."""
    base = environment(inventory({})).get_template("common/base.sh.j2").render()
    (tmp_path / "base.sh").write_text(base)
    script = 'K1_ROLE=test; . "$1"; K1_CONFIG_CHANGED=0; k1_cluster_hosts "$2" "$3"; echo "$K1_CHANGED $K1_CONFIG_CHANGED"'
    proc = subprocess.run(["bash", "-c", script, "hosts", str(tmp_path / "base.sh"), cluster, block],
                          capture_output=True, text=True, timeout=30,
                          env={**os.environ, "K1PROV_HOSTS_FILE": str(tmp_path / "hosts")})
    assert proc.returncode == 0, proc.stderr
    return (tmp_path / "hosts").read_text(), proc.stdout.strip()


def test_cluster_hosts_block_is_idempotent_and_follows_new_addresses(tmp_path):
    (tmp_path / "hosts").write_text("127.0.0.1\tlocalhost\n127.0.1.1 m1\n10.0.0.1 m1.example.org m1  # mine\n"
                                    "10.9.9.9 other\n::1 localhost ip6-localhost\n")
    block = "10.0.0.1\tm1\n10.0.0.2\tm2"
    text, flags = cluster_hosts(tmp_path, block)
    # The file changed, but that is no reason to restart the role's service.
    assert flags == "1 0"
    begin = "# BEGIN k1prov cluster lab (written by k1prov configure; edits here are overwritten)"
    assert text == ("127.0.0.1\tlocalhost\n10.0.0.1 m1.example.org # mine\n10.9.9.9 other\n"
                    "::1 localhost ip6-localhost\n" + begin + "\n10.0.0.1\tm1\n10.0.0.2\tm2\n"
                    "# END k1prov cluster lab\n")
    mtime = (tmp_path / "hosts").stat().st_mtime_ns
    again, flags = cluster_hosts(tmp_path, block)
    assert (again, flags) == (text, "0 0")
    assert (tmp_path / "hosts").stat().st_mtime_ns == mtime
    # m2 reimaged with a new address: the block follows, nothing else moves.
    moved, flags = cluster_hosts(tmp_path, "10.0.0.1\tm1\n10.0.0.7\tm2")
    assert flags == "1 0"
    assert moved == text.replace("10.0.0.2\tm2", "10.0.0.7\tm2")
    # Another cluster's block is left alone; a missing file is created.
    other, _ = cluster_hosts(tmp_path, "10.1.0.1\tx1", cluster="lab2")
    assert other.startswith(moved) and other.endswith("10.1.0.1\tx1\n# END k1prov cluster lab2\n")
    (tmp_path / "hosts").unlink()
    fresh, _ = cluster_hosts(tmp_path, block)
    assert fresh == begin + "\n10.0.0.1\tm1\n10.0.0.2\tm2\n# END k1prov cluster lab\n"


def test_every_role_script_carries_every_member():
    inv = inventory({"spark": {"source": "preinstalled"}})
    for host, scripts in render_all(inv).items():
        for s in scripts:
            assert "10.0.2.1\tc1" in s.text and "10.0.0.3\tm3" in s.text, (host, s.role)
            assert 'k1_cluster_hosts "$CFG_CLUSTER" "$CFG_CLUSTER_HOSTS"' in s.text
