"""Rendering of role scripts: derived values, phases, hashes, settings, template lookup."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from k1prov.errors import ConfigError, InventoryError
from k1prov.inventory.model import Bmc, Cloud, Inventory, Node, SecretRef
from k1prov.roles import (agent_attributes, agent_resources, mesos_quorum, mesos_zk_url, phases,
                          render_all, render_host, spark_master_url, write_rendered, zk_connect,
                          zookeeper_ids)

SHA = "ab" * 64


def node(name: str, index: int, address: str, roles: tuple[str, ...], **extra) -> Node:
    return Node(name=name, index=index, bmc=Bmc("127.0.0.1", 6230 + index, "admin", SecretRef(env="BMC_PW")),
                macs=(f"52:54:00:00:00:{index:02x}",), address=address, roles=roles, **extra)


def cluster(masters: int = 3, agents: int = 5, roles: dict | None = None, path: Path = Path("/inv/site.yaml"),
            master_extra: dict | None = None) -> Inventory:
    nodes = [node(f"m{i + 1}", i, f"10.0.0.{i + 1}", ("zookeeper", "mesos-master", "spark-master"),
                  **(master_extra or {}).get(i, {}))
             for i in range(masters)]
    nodes += [node(f"a{i + 1}", masters + i, f"10.0.1.{i + 1}", ("mesos-agent", "spark-worker"),
                   properties={"cpus": 24, "memory_mb": 131072, "local_gb": 500, "cpu_arch": "x86_64"})
              for i in range(agents)]
    return Inventory(path=path, cluster="prod", cloud=Cloud(), nodes=tuple(nodes),
                     roles=roles if roles is not None else {"spark": {"source": "preinstalled"}})


def test_three_masters_five_agents_derived_values():
    inv = cluster()
    assert mesos_quorum(inv) == 2
    assert zk_connect(inv) == "10.0.0.1:2181,10.0.0.2:2181,10.0.0.3:2181"
    assert mesos_zk_url(inv) == "zk://10.0.0.1:2181,10.0.0.2:2181,10.0.0.3:2181/mesos"
    assert zookeeper_ids(inv) == {"m1": 1, "m2": 2, "m3": 3}
    assert spark_master_url(inv) == "mesos://zk://10.0.0.1:2181,10.0.0.2:2181,10.0.0.3:2181/mesos"


@pytest.mark.parametrize("masters,quorum", [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3)])
def test_quorum_is_a_majority(masters, quorum):
    assert mesos_quorum(cluster(masters=masters)) == quorum


def test_explicit_zookeeper_ids_are_respected_and_others_keep_their_position():
    inv = cluster(master_extra={0: {"zookeeper_id": 7}, 2: {"zookeeper_id": 42}})
    assert zookeeper_ids(inv) == {"m1": 7, "m2": 2, "m3": 42}
    zoo = next(f for f in render_host(inv, inv.node("m1"))[0].files if f.path.endswith("zoo.cfg"))
    servers = [line for line in zoo.text.splitlines() if line.startswith("server.")]
    assert servers == ["server.2=10.0.0.2:2888:3888", "server.7=10.0.0.1:2888:3888",
                       "server.42=10.0.0.3:2888:3888"]


def test_myids_are_stable_when_members_are_added_at_the_end():
    before = zookeeper_ids(cluster(masters=3))
    after = zookeeper_ids(cluster(masters=5))
    assert {k: after[k] for k in before} == before
    assert len(set(after.values())) == 5


def test_duplicate_zookeeper_id_is_an_inventory_error():
    inv = cluster(master_extra={2: {"zookeeper_id": 1}})
    with pytest.raises(InventoryError, match="myid 1 is used by both m1 and m3"):
        zookeeper_ids(inv)


def test_phases_in_dependency_order():
    got = [(p.order, p.role, [n.name for n in p.nodes]) for p in phases(cluster(masters=3, agents=2))]
    assert got == [(1, "zookeeper", ["m1", "m2", "m3"]), (2, "mesos-master", ["m1", "m2", "m3"]),
                   (3, "mesos-agent", ["a1", "a2"]), (4, "spark-master", ["m1", "m2", "m3"]),
                   (5, "spark-worker", ["a1", "a2"])]


def test_render_all_scripts_per_host_in_phase_order():
    rendered = render_all(cluster())
    assert [(s.phase, s.role, s.filename) for s in rendered["m2"]] == [
        (1, "zookeeper", "1-zookeeper.sh"), (2, "mesos-master", "2-mesos-master.sh"),
        (4, "spark-master", "4-spark-master.sh")]
    assert [s.role for s in rendered["a5"]] == ["mesos-agent", "spark-worker"]
    master = rendered["m1"][1].files[0].text
    assert "--quorum=2" in master and "--zk=zk://10.0.0.1:2181,10.0.0.2:2181,10.0.0.3:2181/mesos" in master
    assert "--hostname=m1" in master and "--ip=10.0.0.1" in master and "--cluster=prod" in master
    agent = rendered["a3"][0].files[0].text
    assert "--master=zk://10.0.0.1:2181,10.0.0.2:2181,10.0.0.3:2181/mesos" in agent
    assert "--resources='cpus:24;mem:130048;disk:512000'" in agent
    assert "--attributes=arch:x86_64" in agent


def test_every_script_has_the_contract_markers():
    for scripts in render_all(cluster()).values():
        for s in scripts:
            lines = s.text.splitlines()
            assert lines[0] == "#!/usr/bin/env bash"
            assert "set -euo pipefail" in lines[:8]
            assert f"K1_ROLE={s.role}" in lines
            assert f"K1_SCRIPT_SHA256={s.sha256}" in lines
            assert "K1PROV-RESULT changed=%s" in s.text            # printed by k1_finish
            assert '$K1PROV_STATE_DIR/roles/$K1_ROLE.sha256' in s.text
            assert lines[-1] == "k1_finish"


def test_hash_is_stable_and_follows_config_changes():
    inv = cluster()
    first = {s.role: s.sha256 for s in render_host(inv, inv.node("m1"))}
    again = {s.role: s.sha256 for s in render_host(inv, inv.node("m1"))}
    assert first == again
    changed = cluster(roles={"spark": {"source": "preinstalled"}, "zookeeper": {"tick_time": 3000}})
    later = {s.role: s.sha256 for s in render_host(changed, changed.node("m1"))}
    assert later["zookeeper"] != first["zookeeper"]
    assert later["mesos-master"] == first["mesos-master"]


def test_agent_resources_from_properties_and_overrides():
    inv = cluster(roles={"mesos": {"reserved_memory_mb": 2048, "attributes": {"rack": "r1"}}})
    agent = inv.node("a1")
    assert agent_resources(inv, agent) == "cpus:24;mem:129024;disk:512000"
    assert agent_attributes(inv, agent) == "arch:x86_64;rack:r1"
    own = dataclasses.replace(agent, properties={"mesos_resources": "cpus:2;mem:1024",
                                                 "mesos_attributes": {"rack": "r9"}})
    assert agent_resources(inv, own) == "cpus:2;mem:1024"
    assert agent_attributes(inv, own) == "rack:r9"


def test_standalone_spark_masters_and_workers():
    inv = cluster(masters=1, agents=2, roles={"spark": {"source": "preinstalled", "spark_home": "/srv/pyspark",
                                                        "worker_cores": 4, "worker_memory": "8g"}})
    inv = dataclasses.replace(inv, nodes=tuple(dataclasses.replace(n, roles=tuple(
        r for r in n.roles if not r.startswith("mesos"))) for n in inv.nodes))
    assert spark_master_url(inv) == "spark://10.0.0.1:7077"
    master = render_host(inv, inv.node("m1"))[1]
    launcher = next(f for f in master.files if f.path.endswith("spark-master-run")).text
    assert ('exec "$SPARK_HOME/sbin/spark-daemon.sh" start org.apache.spark.deploy.master.Master 1 '
            "--host 10.0.0.1 --port 7077 --webui-port 8080") in launcher
    assert "export SPARK_HOME=/srv/pyspark" in launcher
    worker = render_host(inv, inv.node("a2"))[0]
    launcher = next(f for f in worker.files if f.path.endswith("spark-worker-run")).text
    assert ("org.apache.spark.deploy.worker.Worker 1 spark://10.0.0.1:7077 --host 10.0.1.2 --webui-port 8081 "
            "--work-dir /var/lib/spark/work --cores 4 --memory 8g") in launcher
    defaults = next(f for f in worker.files if f.path == "/srv/pyspark/conf/spark-defaults.conf").text
    assert "spark.master spark://10.0.0.1:7077" in defaults.splitlines()
    assert "spark.mesos" not in defaults


@pytest.mark.parametrize("mode,coarse", [("coarse", "true"), ("fine", "false")])
def test_spark_on_mesos_defaults(mode, coarse):
    inv = cluster(roles={"spark": {"source": "preinstalled", "mode": mode,
                                   "executor_uri": "http://repo/spark.tgz", "defaults": {"spark.cores.max": 8}}})
    client = render_host(inv, inv.node("a1"))[1]
    defaults = next(f for f in client.files if f.path.endswith("spark-defaults.conf")).text.splitlines()
    assert "spark.master mesos://zk://10.0.0.1:2181,10.0.0.2:2181,10.0.0.3:2181/mesos" in defaults
    assert f"spark.mesos.coarse {coarse}" in defaults
    assert "spark.executor.uri http://repo/spark.tgz" in defaults
    assert "spark.cores.max 8" in defaults
    # No Spark daemon on Mesos workers: executors run under the Mesos agents.
    assert not any(f.path.endswith("-run") for f in client.files)
    dispatcher = render_host(inv, inv.node("m1"))[2]
    launcher = next(f for f in dispatcher.files if f.path.endswith("spark-dispatcher-run")).text
    assert "org.apache.spark.deploy.mesos.MesosClusterDispatcher" in launcher


def test_spark_4_renders_without_version_assumptions():
    sha = "cd" * 64
    inv = cluster(roles={"spark": {"source": "tarball", "version": "4.0.1", "sha512": sha}})
    for scripts in render_all(inv).values():
        for s in scripts:
            if s.role.startswith("spark"):
                assert "spark-4.0.1/spark-4.0.1-bin-hadoop3.tgz" in s.text
                assert "3.5" not in s.text and "_2.12" not in s.text


def test_tarball_and_mirror_sources_need_a_checksum_and_give_urls():
    with pytest.raises(InventoryError, match="roles.zookeeper.sha512"):
        render_all(cluster(roles={"spark": {"source": "preinstalled"}, "zookeeper": {"source": "tarball"}}))
    inv = cluster(roles={"spark": {"source": "mirror", "mirror": "http://mirror.local/apache/", "sha512": SHA},
                         "zookeeper": {"source": "tarball", "version": "3.9.3", "sha512": SHA}})
    m1 = {s.role: s.text for s in render_host(inv, inv.node("m1"))}
    assert ("CFG_TARBALL_URL=https://archive.apache.org/dist/zookeeper/zookeeper-3.9.3/"
            "apache-zookeeper-3.9.3-bin.tar.gz") in m1["zookeeper"]
    assert "CFG_SERVER_SCRIPT=/opt/zookeeper/bin/zkServer.sh" in m1["zookeeper"]
    assert ("CFG_TARBALL_URL=http://mirror.local/apache/spark/spark-3.5.9/spark-3.5.9-bin-hadoop3.tgz"
            in m1["spark-master"])


def test_mesos_sources():
    aventer = render_host(cluster(), cluster().node("m1"))[1].text
    assert "CFG_SOURCE=aventer" in aventer
    assert "CFG_REPO_KEY_URL=https://www.aventer.biz/assets/support_aventer.asc" in aventer
    with pytest.raises(InventoryError, match="roles.mesos.repo_url"):
        render_all(cluster(roles={"spark": {"source": "preinstalled"}, "mesos": {"source": "mirror"}}))
    inv = cluster(roles={"spark": {"source": "preinstalled"}, "mesos": {"source": "mirror", "mirror": "http://m/x"}})
    mirror = render_host(inv, inv.node("m1"))[1].text
    assert "CFG_REPO_URL=http://m/x" in mirror and "CFG_REPO_KEY_URL=''" in mirror
    with pytest.raises(InventoryError, match="roles.mesos.url: source tarball needs the URL"):
        render_all(cluster(roles={"spark": {"source": "preinstalled"}, "mesos": {"source": "tarball"}}))
    with pytest.raises(InventoryError, match="roles.mesos.sha512"):
        render_all(cluster(roles={"spark": {"source": "preinstalled"},
                                  "mesos": {"source": "tarball", "url": "http://m/mesos.tar.xz"}}))
    # An operator's own build, unpacked away from its build prefix: binaries by path, the
    # relocation flags, and Spark's libmesos from the same tree.
    inv = cluster(roles={"spark": {"source": "preinstalled"},
                         "mesos": {"source": "tarball", "url": "http://m/mesos.tar.xz", "sha512": "ab" * 64,
                                   "install_dir": "/srv/mesos"}})
    master, agent = (render_host(inv, inv.node(n)) for n in ("m1", "a1"))
    assert "CFG_TARBALL_URL=http://m/mesos.tar.xz" in master[1].text
    assert f"CFG_TARBALL_SHA512={'ab' * 64}" in master[1].text
    launcher = master[1].files[0].text
    assert "exec /srv/mesos/sbin/mesos-master" in launcher and "--webui_dir=/srv/mesos/share/mesos/webui" in launcher
    assert "--launcher_dir=/srv/mesos/libexec/mesos" in agent[0].files[0].text
    env = next(f.text for s in master for f in s.files if f.path.endswith("spark-env.sh"))
    assert "MESOS_NATIVE_JAVA_LIBRARY=/srv/mesos/lib/libmesos.so" in env and "LIBPROCESS_IP=10.0.0.1" in env


@pytest.mark.parametrize("roles,field", [
    ({"zookeeper": {"data_dri": "/x"}}, "roles.zookeeper.data_dri"),
    ({"zookeeper": {"client_port": "2181"}}, "roles.zookeeper.client_port"),
    ({"zookeeper": {"client_port": True}}, "roles.zookeeper.client_port"),
    ({"spark": {"executor_uri": "http://x\nspark.evil true"}}, "roles.spark.executor_uri"),
    ({"spark": {"user": "spark\nUser=root"}}, "roles.spark.user"),
    ({"mesos": {"agent_flags": {"bad flag": "x"}}}, "roles.mesos.agent_flags.bad flag"),
])
def test_bad_settings_are_located_inventory_errors(roles, field):
    roles = {"spark": {"source": "preinstalled"}, **roles} if "spark" not in roles else roles
    with pytest.raises(InventoryError) as err:
        render_all(cluster(roles=roles))
    assert err.value.field == field
    assert err.value.file == "/inv/site.yaml"


def test_write_rendered_layout_and_plan(tmp_path):
    plan = write_rendered(cluster(), tmp_path)
    assert sorted(p.name for p in (tmp_path / "m1").glob("*.sh")) == [
        "1-zookeeper.sh", "2-mesos-master.sh", "4-spark-master.sh"]
    assert (tmp_path / "m1" / "files" / "etc/zookeeper/conf/zoo.cfg").read_text().startswith("# Rendered by k1prov")
    assert (tmp_path / "a1" / "files" / "usr/local/lib/k1prov/mesos-agent-run").is_file()
    on_disk = json.loads((tmp_path / "plan.json").read_text())
    assert on_disk == plan
    assert on_disk["mesos_quorum"] == 2 and on_disk["zookeeper_ids"] == {"m1": 1, "m2": 2, "m3": 3}
    assert [p["role"] for p in on_disk["phases"]][:3] == ["zookeeper", "mesos-master", "mesos-agent"]
    script = (tmp_path / "m1" / "1-zookeeper.sh").read_text()
    assert on_disk["hosts"]["m1"][0]["sha256"] in script


def test_operator_template_override_from_inventory_dir(tmp_path):
    (tmp_path / "tpl" / "zookeeper").mkdir(parents=True)
    (tmp_path / "tpl" / "zookeeper" / "zoo.cfg.j2").write_text("# site zoo.cfg\ntickTime={{ zk.tick_time }}\n")
    inv = cluster(roles={"spark": {"source": "preinstalled"}, "templates_dir": "tpl"}, path=tmp_path / "site.yaml")
    zk = render_host(inv, inv.node("m1"))[0]
    assert next(f.text for f in zk.files if f.path.endswith("zoo.cfg")) == "# site zoo.cfg\ntickTime=2000\n"
    # The other templates still come from k1prov's own directory.
    assert "k1_finish" in zk.text


def test_templates_from_env_override(tmp_path, monkeypatch):
    (tmp_path / "mesos").mkdir()
    (tmp_path / "mesos" / "master-run.sh.j2").write_text("#!/usr/bin/env bash\nexec true {{ quorum | shq }}\n")
    monkeypatch.setenv("K1PROV_TEMPLATES", str(tmp_path))
    inv = cluster()
    assert render_host(inv, inv.node("m1"))[1].files[0].text == "#!/usr/bin/env bash\nexec true 2\n"
    monkeypatch.setenv("K1PROV_TEMPLATES", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="K1PROV_TEMPLATES"):
        render_all(inv)


def test_broken_operator_template_is_a_config_error(tmp_path):
    (tmp_path / "zookeeper").mkdir()
    (tmp_path / "zookeeper" / "zoo.cfg.j2").write_text("dataDir={{ zk.no_such_setting }}\n")
    inv = cluster(roles={"spark": {"source": "preinstalled"}, "templates_dir": str(tmp_path)})
    with pytest.raises(ConfigError, match="zoo.cfg.j2.*no_such_setting"):
        render_all(inv)


def test_mesos_without_zookeeper_is_an_inventory_error():
    inv = cluster()
    inv = dataclasses.replace(inv, nodes=tuple(dataclasses.replace(
        n, roles=tuple(r for r in n.roles if r != "zookeeper")) for n in inv.nodes))
    with pytest.raises(InventoryError, match="no node has the zookeeper role"):
        render_all(inv)


def test_compiled_templates_are_reused_between_runs_and_follow_edits(tmp_path, monkeypatch):
    """The compiled-template cache (XDG_CACHE_HOME/k1prov/templates-*): a second render in a
    new environment reads it; an edited template renders its new text all the same."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "tpl" / "zookeeper").mkdir(parents=True)
    site = tmp_path / "tpl" / "zookeeper" / "zoo.cfg.j2"
    site.write_text("# one\ntickTime={{ zk.tick_time }}\n")
    inv = cluster(roles={"spark": {"source": "preinstalled"}, "templates_dir": "tpl"}, path=tmp_path / "site.yaml")

    def zoo_cfg() -> str:
        zk = render_host(inv, inv.node("m1"))[0]
        return next(f.text for f in zk.files if f.path.endswith("zoo.cfg"))

    assert zoo_cfg() == "# one\ntickTime=2000\n"
    cached = list((tmp_path / "cache" / "k1prov").glob("templates-*/*"))
    assert cached, "nothing was cached"
    assert zoo_cfg() == "# one\ntickTime=2000\n"
    site.write_text("# two\ntickTime={{ zk.tick_time }}\n")
    assert zoo_cfg() == "# two\ntickTime=2000\n"
