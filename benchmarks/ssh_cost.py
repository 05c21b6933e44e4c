"""Where one SSH command's time goes: client CPU, server CPU and wall time per connection.

    .venv/bin/python benchmarks/ssh_cost.py [--connections 40] [--login-rc stock|machine]

Starts a small sshd farm (sshd_farm.py, as root), puts its sshds in a cgroup of their own
(cpuacct on cgroup v1, cpu.stat on v2) so that everything they start for a session (the
privilege-separated children, the login shell and its rc files, the command) is counted,
then runs each variant sequentially, one connection at a time, over the farm's hosts:

  handshake        k1prov's connection (paramiko: key exchange, host key pinned, key auth), closed
  exec true        + one exec channel running `true`, as clush and ssh send it
  k1prov true      ssh.run_command(target, "true"): the command in k1prov's session wrapper
  k1prov script    ssh.put_and_run of a small script (the `script` job of bench_fanout.py)
  openssh true     `ssh host true` (OpenSSH's client, as clush runs it)

The difference between two rows is what the added step costs: "k1prov true" - "exec true"
is k1prov's wrapper on the host; "exec true" - "handshake" is sshd's session and the login
shell. Only loopback addresses are contacted; every call has a finite timeout.
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from sshd_farm import SshdFarm  # noqa: E402

from k1prov import ssh  # noqa: E402

CONNECT_TIMEOUT = 10.0
COMMAND_TIMEOUT = 30.0
SCRIPT = "#!/bin/sh\nset -e\nn=$(ls / | wc -l)\necho \"probe ok $n\"\n"


class ServerCpu:
    """CPU seconds used by the processes of one cgroup (and everything they start)."""

    def __init__(self, name: str):
        v2 = Path("/sys/fs/cgroup/cgroup.controllers").exists()
        self.dir = Path("/sys/fs/cgroup" if v2 else "/sys/fs/cgroup/cpuacct") / name
        self.v2 = v2

    def __enter__(self) -> "ServerCpu":
        self.dir.mkdir(exist_ok=True)
        return self

    def add(self, pid: int) -> None:
        (self.dir / ("cgroup.procs" if self.v2 else "tasks")).write_text(str(pid))

    def seconds(self) -> float:
        if self.v2:
            stat = dict(line.split() for line in (self.dir / "cpu.stat").read_text().splitlines())
            return int(stat["usage_usec"]) / 1e6
        return int((self.dir / "cpuacct.usage").read_text()) / 1e9

    def __exit__(self, *exc) -> None:
        # The farm is stopped by then; a cgroup with no process left can go.
        for _ in range(50):
            try:
                self.dir.rmdir()
                return
            except OSError:
                time.sleep(0.1)


def client_cpu() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def variants(farm: SshdFarm):
    def target(address: str) -> ssh.SshTarget:
        return ssh.SshTarget(address, address, key_filename=str(farm.key),
                             known_hosts=farm.known_hosts)

    def handshake(address: str) -> None:
        conn = ssh.connection(target(address), connect_timeout=CONNECT_TIMEOUT)
        conn.open()
        conn.close()

    def exec_true(address: str) -> None:
        conn = ssh.connection(target(address), connect_timeout=CONNECT_TIMEOUT)
        conn.open()
        chan = conn.client.get_transport().open_session(timeout=CONNECT_TIMEOUT)
        chan.settimeout(COMMAND_TIMEOUT)
        chan.exec_command("true")
        assert chan.recv_exit_status() == 0
        conn.close()

    def k1prov_true(address: str) -> None:
        res = ssh.run_command(target(address), "true", connect_timeout=CONNECT_TIMEOUT,
                              command_timeout=COMMAND_TIMEOUT)
        assert res.ok, res

    def k1prov_script(address: str) -> None:
        res = ssh.put_and_run(target(address), SCRIPT, connect_timeout=CONNECT_TIMEOUT,
                              command_timeout=COMMAND_TIMEOUT)
        assert res.ok, res

    def openssh_true(address: str) -> None:
        subprocess.run(["ssh", "-F", "/dev/null", "-i", str(farm.key), "-o", "BatchMode=yes",
                        "-o", f"UserKnownHostsFile={farm.known_hosts}",
                        "-o", "StrictHostKeyChecking=yes", f"root@{address}", "true"],
                       check=True, timeout=COMMAND_TIMEOUT, stdin=subprocess.DEVNULL)

    return {"handshake": handshake, "exec true": exec_true, "k1prov true": k1prov_true,
            "k1prov script": k1prov_script, "openssh true": openssh_true}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--connections", type=int, default=40, help="per variant")
    ap.add_argument("--hosts", type=int, default=10, help="farm size (connections go round)")
    ap.add_argument("--login-rc", choices=("stock", "machine"), default="stock")
    ap.add_argument("--rounds", type=int, default=3,
                    help="the variants run in turn this many times; the median round counts")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="k1prov-sshcost-") as tmp, \
            ServerCpu(f"k1prov-sshcost-{os.getpid()}") as server, \
            SshdFarm(args.hosts, workdir=Path(tmp) / "farm", login_rc=args.login_rc) as farm:
        for proc in farm.procs.values():
            server.add(proc.pid)
        table: dict[str, list[tuple[float, float, float]]] = {}
        for _ in range(args.rounds):
            for name, fn in variants(farm).items():
                c0, s0, t0 = client_cpu(), server.seconds(), time.perf_counter()
                for i in range(args.connections):
                    fn(farm.addresses[i % len(farm.addresses)])
                wall = time.perf_counter() - t0
                # sshd's session processes may still be exiting: let them be counted.
                time.sleep(1.0)
                n = args.connections
                table.setdefault(name, []).append(
                    (wall / n * 1e3, (client_cpu() - c0) / n * 1e3, (server.seconds() - s0) / n * 1e3))
    print(f"per connection, median of {args.rounds} rounds of {args.connections} "
          f"(login rc: {args.login_rc}; load average {os.getloadavg()[0]:.1f})")
    print(f"{'variant':15} {'wall ms':>8} {'client CPU ms':>14} {'server CPU ms':>14}")
    for name, rounds in table.items():
        w, c, s = (sorted(col)[len(col) // 2] for col in zip(*rounds))
        print(f"{name:15} {w:8.1f} {c:14.1f} {s:14.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
