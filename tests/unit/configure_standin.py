"""Stand-ins for the configure and cluster tests (test_configure, test_rolling,
test_cluster_health), shared here rather than imported from one test module into another:
a three-node inventory, hosts that record the role scripts run on them and answer the
status and health reads (FakeHosts, `use` to put them in place of SSH), one configure run,
and a verb context whose Ironic is a stand-in with every node active (FakeProv).
"""
from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field, replace
from pathlib import Path

import k1prov.configure as cfg
from k1prov import probe
from k1prov.context import VerbContext
from k1prov.inventory import parse_inventory
from k1prov.settings import DEFAULT_TIMEOUTS
from k1prov.ssh import CommandResult

HEAD = """\
cluster: t1
cloud: {ironic_url: "http://127.0.0.1:9"}
defaults:
  bmc: {address: 127.0.0.1, username: u, password: {env: P}}
"""
NODES = """\
nodes:
  - {name: n1, bmc: {port: 7001}, macs: ["52:54:00:00:00:01"], address: 10.0.0.1,
     roles: [zookeeper, spark-master]}
  - {name: n2, bmc: {port: 7002}, macs: ["52:54:00:00:00:02"], address: 10.0.0.2,
     roles: [zookeeper, spark-worker]}
  - {name: n3, bmc: {port: 7003}, macs: ["52:54:00:00:00:03"], address: 10.0.0.3,
     roles: [zookeeper, spark-worker]}
"""
LAB_ROLES = """\
roles:
  zookeeper: {source: preinstalled, server_script: /usr/share/zookeeper/bin/zkServer.sh}
  spark: {source: preinstalled, manager: standalone}
"""


def load(roles: str = LAB_ROLES, nodes: str = NODES):
    return parse_inventory(HEAD + roles + nodes, path="inv.yaml")


class FakeHosts:
    """Stands in for SSH: records what ran where; a role script 'records' its hash."""

    def __init__(self, *, fail: set[tuple[str, str]] = frozenset(), unhealthy: bool = False):
        self.hashes: dict[str, dict[str, str]] = {}
        self.ran: list[tuple[str, str]] = []
        self.fail = fail
        self.unhealthy = unhealthy
        self.leader = "n2"
        self.mesos_leader = "m1"
        # (host, service) pairs whose service is down; a role script run starts it.
        self.stopped: set[tuple[str, str]] = set()
        # Hosts whose status read fails (a broken shell, say).
        self.status_broken: set[str] = set()
        # Hosts whose ZooKeeper data directory was wiped (no myid); the zookeeper role
        # script writes it again.
        self.wiped: set[str] = set()
        # SSH sessions opened for reads (status and health), per host.
        self.sessions: list[str] = []

    def put_and_run(self, target, text, *, sudo, connect_timeout, command_timeout):
        role = re.search(r"^K1_ROLE=(\S+)$", text, re.MULTILINE).group(1)
        digest = re.search(r"^K1_SCRIPT_SHA256=(\S+)$", text, re.MULTILINE).group(1)
        self.ran.append((target.host, role))
        if (target.host, role) in self.fail:
            return CommandResult(target.host, 1, "", "k1prov[x]: line 1\nk1prov[x]: error: it broke\n")
        changed = self.hashes.get(target.host, {}).get(role) != digest \
            or any(host == target.host and service == role for host, service in self.stopped)
        self.hashes.setdefault(target.host, {})[role] = digest
        if role == "zookeeper" and target.host in self.wiped:
            self.wiped.discard(target.host)
            changed = True
        self.stopped = {(h, s) for h, s in self.stopped if not (h == target.host and s == role)}
        return CommandResult(target.host, 0, f"K1PROV-RESULT changed={int(changed)}\n",
                             "k1prov[x]: wrote things\n")

    def run_command(self, target, command, *, connect_timeout, command_timeout):
        """One session: a batch of commands (k1prov.roles.health.batch_command)."""
        self.sessions.append(target.host)
        out = ""
        for i, cmd in enumerate(batched_commands(command)):
            res = self.one_command(target, cmd)
            out += f"{res.stdout}\nK1PROV-PROBE {i} {res.exit_code}\n"
        return CommandResult(target.host, 0, out, "")

    def one_command(self, target, command):
        if "k1_status" in command and target.host in self.status_broken:
            return CommandResult(target.host, 127, "", "bash: not found\n")
        if "k1_status" in command:
            lines = ""
            for role, service, files in re.findall(r"^k1_status (\S+) (\S+)(.*)$", shlex.split(command)[-1],
                                                   re.MULTILINE):
                service = "" if service == "''" else service
                digest = self.hashes.get(target.host, {}).get(role, "-")
                state = "none" if not service else \
                    "stopped" if digest == "-" or (target.host, service) in self.stopped else "running"
                lost = " lost" if "/myid" in files and target.host in self.wiped else ""
                lines += f"{role} {digest} {state}{lost}\n"
            return CommandResult(target.host, 0, lines, "")
        if "/myid" in command:
            return CommandResult(target.host, 0, "missing\n" if target.host in self.wiped else "present\n", "")
        if "srvr" in command:
            if (target.host, "zookeeper") in self.stopped:      # connection refused
                return CommandResult(target.host, 1, "", "")
            mode = "leader" if target.host == self.leader else "follower"
            return CommandResult(target.host, 0 if not self.unhealthy else 1,
                                 f"Zookeeper version: 3.8\nMode: {mode}\n", "")
        if "/json/" in command:
            workers = ",".join(f'{{"host": "10.0.0.{i}", "state": "ALIVE"}}' for i in (2, 3))
            return CommandResult(target.host, 0, f'{{"status": "ALIVE", "workers": [{workers}]}}', "")
        if "Registering worker" in command:     # the Spark check's fallback: the master's log
            return CommandResult(target.host, 1, "", "")
        if ":5050/state" in command:            # a Mesos master: the leader, or a standby
            address = re.search(r"http://([\d.]+):5050/state", command).group(1)
            if target.host != self.mesos_leader:
                return CommandResult(target.host, 0, "\nK1PROV-HTTP 307 //10.0.0.1:5050/state", "")
            pid = f"master@{address}:5050"
            # An agent is registered once its script ran there.
            agents = [{"hostname": h, "pid": f"slave(1)@{h}:5051", "active": True,
                       "resources": {"cpus": 2, "mem": 1024, "disk": 2048}}
                      for h, roles in sorted(self.hashes.items()) if "mesos-agent" in roles]
            state = json.dumps({"leader": pid, "pid": pid, "slaves": agents})
            return CommandResult(target.host, 0, f"{state}\nK1PROV-HTTP 200 ", "")
        if ":5050/metrics/snapshot" in command:
            return CommandResult(target.host, 0, '{"registrar/log/recovered": 1}', "")
        raise AssertionError(f"unexpected command {command}")


def batched_commands(command: str) -> list[str]:
    body = shlex.split(command)[-1]
    assert "K1PROV-PROBE" in body, command
    return re.findall(r"^\(\n(.*?)\n\) </dev/null$", body, re.S | re.M)


def use(monkeypatch, hosts: "FakeHosts") -> "FakeHosts":
    monkeypatch.setattr(cfg, "put_and_run", hosts.put_and_run)
    monkeypatch.setattr(probe, "run_command", hosts.run_command)
    return hosts


def run(tmp_path, **kw):
    """One configure run over the three-node inventory (health checks: 0.5 s)."""
    ctx = VerbContext(load(), state_root=tmp_path, timeouts=replace(DEFAULT_TIMEOUTS, health=0.5))
    return cfg.apply(ctx, **kw)


@dataclass
class IronicNode:
    name: str
    provision_state: str = "active"
    power_state: str = "power on"
    last_error: str | None = None
    conductor_group: str | None = None
    shard: str | None = None
    properties: dict = field(default_factory=dict)


class FakeIronic:
    def __init__(self, nodes: dict[str, IronicNode]):
        self.nodes = nodes

    def own_nodes(self) -> dict[str, IronicNode]:
        return self.nodes


def FakeProv(tmp_path: Path, *, verdict_timeout: float) -> VerbContext:
    """A real verb context whose Ironic is a stand-in with every node active."""
    notes: list[str] = []
    ctx = VerbContext(load(), timeouts=replace(DEFAULT_TIMEOUTS, health_verdict=verdict_timeout),
                      state_root=tmp_path, notify=notes.append)
    ctx.notes = notes
    ironic = FakeIronic({n.name: IronicNode(n.name) for n in ctx.inventory.nodes})
    ctx.ironic = lambda: ironic
    return ctx
