"""SSH fan-out: `k1prov run` against ClusterShell, parallel-ssh, Ansible, Fabric and asyncssh.

    .venv/bin/python benchmarks/bench_fanout.py --sizes 50,200 --repeat 3

Starts its own sshd farm (benchmarks/sshd_farm.py: one sshd per loopback address
127.0.1.1.., port 22, shared host key), then, in the same run on the same farm, runs
every tool as a subprocess and measures its wall time and client CPU (user+sys of the
tool and all its children, from wait4) and peak RSS:
  true     the command `true` on every host;
  script   push a small script and run it: k1prov `run --script` (mktemp -d, SFTP upload,
           run, rm: one connection, four channels); Ansible `-m script` (its own remote
           tmp dir and upload); the others inline the script in one command
           (base64 into a mktemp file, run, rm: one exec channel, cheaper than an upload).
Tools run in a rotating order in each repetition; the medians are reported as ratios
to k1prov (>1 = the tool used more time/CPU than k1prov). Then k1prov alone: adaptive vs
fixed concurrency levels on the largest size, and peak RSS at 200 and 1000 items with a
local transport (run_fanout with fn = sleep, no SSH).

Peer tools come from their own virtualenv (--bench-venv, default
~/.cache/k1prov/bench-venv, created from benchmarks/requirements.txt when missing).
Every subprocess has a finite timeout; only loopback addresses are contacted.
"""
from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import resource
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
K1PROV = ROOT / ".venv" / "bin" / "k1prov"
DEFAULT_BENCH_VENV = Path.home() / ".cache" / "k1prov" / "bench-venv"
TOOLS = ("k1prov", "clush", "pssh", "ansible", "fabric", "asyncssh")
# The peers' fixed fan-out: clush's -f and the like (Ansible's -f is 50, as operators run it).
PEER_FANOUT = 64
ANSIBLE_FORKS = 50
RUN_TIMEOUT = 600.0
SSH_TIMEOUT = 30

SCRIPT = """#!/bin/sh
# A small probe, the size of a role's health check.
set -e
n=$(ls / | wc -l)
echo "probe ok $n"
"""


@dataclass
class Run:
    tool: str
    job: str
    hosts: int
    wall: float
    cpu: float
    maxrss_kb: int
    ok: bool
    note: str = ""
    # k1prov only: the climber's windows (t, level, items/s) and the level it ended at.
    trace: list | None = None
    final_level: int | None = None


# ---- running one measured subprocess --------------------------------------------------

def measured(argv: list[str], *, env: dict, timeout: float = RUN_TIMEOUT,
             stdin_path: Path | None = None) -> tuple[float, float, int, int, str]:
    """(wall, cpu of the process tree, peak rss kB, exit code, stdout+stderr)."""
    with tempfile.TemporaryFile() as out, \
            (open(stdin_path, "rb") if stdin_path else open(os.devnull, "rb")) as stdin:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, stdin=stdin, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        killer = threading.Timer(timeout, lambda: _kill_group(proc.pid))
        killer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            killer.cancel()
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode(errors="replace")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss, proc.returncode, text


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, 9)
    except ProcessLookupError:
        pass


# ---- the peers' own small programs (run with --peer, in the benchmark venv) -----------

def inline_script_command(script: str) -> str:
    blob = base64.b64encode(script.encode()).decode()
    return (f"d=$(mktemp -d /tmp/bench.XXXXXXXX) && echo {blob} | base64 -d > $d/s && "
            f"chmod 700 $d/s && $d/s; rc=$?; rm -rf $d; exit $rc")


def peer_main(tool: str, hosts: list[str], key: str, known_hosts: str, command: str) -> int:
    if tool == "pssh":
        from pssh.clients import ParallelSSHClient
        # ssh2-python has no known_hosts checking in ParallelSSHClient: it is not done here.
        client = ParallelSSHClient(hosts, user="root", pkey=key, pool_size=PEER_FANOUT,
                                   timeout=SSH_TIMEOUT, num_retries=1)
        output = client.run_command(command, stop_on_errors=False)
        client.join(output, timeout=RUN_TIMEOUT)
        good = 0
        for host_out in output:
            if host_out.exception is None:
                for _ in host_out.stdout:
                    pass
                good += host_out.exit_code == 0
    elif tool == "fabric":
        from fabric import ThreadingGroup
        from fabric.exceptions import GroupException
        group = ThreadingGroup(*hosts, user="root", connect_timeout=SSH_TIMEOUT, connect_kwargs={
            "key_filename": [key], "look_for_keys": False, "allow_agent": False})
        for conn in group:
            conn.client.load_host_keys(known_hosts)
        try:
            results = group.run(command, hide=True, warn=True, timeout=RUN_TIMEOUT)
        except GroupException as exc:
            results = exc.result
        good = sum(1 for r in results.values() if getattr(r, "ok", False))
        group.close()
    elif tool == "asyncssh":
        import asyncio

        import asyncssh

        async def one(host: str, gate: asyncio.Semaphore) -> bool:
            async with gate:
                try:
                    async with asyncssh.connect(host, username="root", client_keys=[key],
                                                known_hosts=known_hosts, config=[],
                                                connect_timeout=SSH_TIMEOUT) as conn:
                        res = await conn.run(command, check=False, timeout=RUN_TIMEOUT)
                        return res.exit_status == 0
                except (OSError, asyncssh.Error):
                    return False

        async def all_hosts() -> int:
            gate = asyncio.Semaphore(PEER_FANOUT)
            return sum(await asyncio.gather(*(one(h, gate) for h in hosts)))

        good = asyncio.run(all_hosts())
    else:
        raise SystemExit(f"unknown peer {tool}")
    print(f"{good}/{len(hosts)} ok")
    return 0 if good == len(hosts) else 1


# ---- the benchmark ---------------------------------------------------------------------

class Bench:
    def __init__(self, farm, venv: Path, workdir: Path, other_k1provs: dict[str, Path] | None = None):
        self.farm, self.venv, self.work = farm, venv, workdir
        # name -> another k1prov's executable (e.g. an older checkout's), run like k1prov.
        self.k1provs = {"k1prov": K1PROV, **(other_k1provs or {})}
        self.home = workdir / "home"           # empty: no tool reads the user's ssh config
        self.home.mkdir(exist_ok=True)
        self.state = workdir / "k1prov-state"
        self.script = workdir / "probe.sh"
        self.script.write_text(SCRIPT)
        self.script.chmod(0o755)
        (workdir / "ansible.cfg").write_text("[defaults]\nretry_files_enabled = False\n")
        self.env = {"PATH": f"{venv}/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(self.home),
                    "LANG": "C.UTF-8", "K1PROV_STATE_DIR": str(self.state),
                    "ANSIBLE_CONFIG": str(workdir / "ansible.cfg"),
                    "ANSIBLE_HOST_KEY_CHECKING": "True",
                    "ANSIBLE_SSH_ARGS": self._ssh_opts() + " -o ControlMaster=no",
                    "ANSIBLE_LOCAL_TEMP": str(workdir / "ansible-tmp"),
                    "ANSIBLE_NOCOLOR": "1", "ANSIBLE_DEPRECATION_WARNINGS": "False"}

    def _ssh_opts(self) -> str:
        return (f"-F /dev/null -o UserKnownHostsFile={self.farm.known_hosts} "
                f"-o StrictHostKeyChecking=yes -o BatchMode=yes -o ConnectTimeout={SSH_TIMEOUT}")

    def hosts(self, n: int) -> list[str]:
        return self.farm.addresses[:n]

    def inventory(self, n: int) -> Path:
        path = self.work / f"inventory-{n}.yaml"
        if not path.exists():
            first = self.farm.addresses[0]
            path.write_text(f"""\
cluster: bench
cloud: {{ironic_url: "http://127.0.0.1:9"}}
ssh: {{user: root, private_key: "{self.farm.key}", port: {self.farm.port}}}
defaults:
  bmc: {{address: 127.0.0.1, username: admin, password: {{env: BENCH_UNUSED}}}}
nodes:
  - name: h[001-{n:03d}]
    address: {{start: {first}}}
    macs: [{{start: "52:54:00:bb:00:01"}}]
    bmc: {{port: {{start: 20001}}}}
""")
            (self.work / f"ansible-{n}.ini").write_text("[bench]\n" + "\n".join(self.hosts(n)) + "\n")
        return path

    def argv(self, tool: str, job: str, n: int, *, concurrency: int | None = None) -> tuple[list[str], Path | None]:
        hosts = self.hosts(n)
        py = str(self.venv / "bin" / "python")
        command = "true" if job == "true" else inline_script_command(SCRIPT)
        if tool in self.k1provs:
            # --json: the report carries the concurrency trace (no progress bar either).
            argv = [str(self.k1provs[tool]), "run", "-i", str(self.inventory(n)), "--json",
                    "--known-hosts", str(self.farm.known_hosts)]
            if concurrency:
                argv += ["-c", str(concurrency)]
            if job == "true":
                return argv + ["--", "true"], None
            return argv + ["--script", str(self.script)], None
        if tool == "clush":
            return [str(self.venv / "bin" / "clush"), "-f", str(PEER_FANOUT), "-l", "root", "-b",
                    "-t", str(SSH_TIMEOUT), "-o", f"-i {self.farm.key} {self._ssh_opts()}",
                    "-w", ",".join(hosts), command], None
        if tool == "ansible":
            self.inventory(n)
            argv = [str(self.venv / "bin" / "ansible"), "bench", "-i", str(self.work / f"ansible-{n}.ini"),
                    "-u", "root", "--private-key", str(self.farm.key), "-f", str(ANSIBLE_FORKS)]
            if job == "true":
                return argv + ["-m", "raw", "-a", "true"], None
            return argv + ["-m", "script", "-a", str(self.script)], None
        return [py, str(Path(__file__).resolve()), "--peer", tool, "--peer-hosts", ",".join(hosts),
                "--peer-key", str(self.farm.key), "--peer-known-hosts", str(self.farm.known_hosts),
                "--peer-command", command], None

    def run(self, tool: str, job: str, n: int, *, concurrency: int | None = None) -> Run:
        argv, stdin = self.argv(tool, job, n, concurrency=concurrency)
        wall, cpu, rss, code, text = measured(argv, env=self.env, stdin_path=stdin)
        label = tool if concurrency is None else f"k1prov -c {concurrency}"
        note = "" if code == 0 else f"exit {code}: {text.strip()[-300:]}"
        run = Run(label, job, n, round(wall, 3), round(cpu, 3), rss, code == 0, note)
        if tool in self.k1provs:
            run.trace, run.final_level = k1prov_trace(text)
        return run


def k1prov_trace(text: str) -> tuple[list | None, int | None]:
    """The concurrency trace and final level from `k1prov run --json` output."""
    start = text.find("{")
    try:
        report = json.loads(text[start:]) if start >= 0 else {}
    except ValueError:
        return None, None
    return report.get("trace"), report.get("final_concurrency")


def local_rss(n: int) -> dict:
    """Peak RSS of a process that fans out n items with a sleep as the transport."""
    argv = [sys.executable, str(Path(__file__).resolve()), "--local-fanout", str(n)]
    wall, cpu, rss, code, text = measured(argv, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return {"items": n, "wall": round(wall, 3), "cpu": round(cpu, 3), "maxrss_kb": rss,
            "ok": code == 0, "out": text.strip()[-200:]}


def local_fanout_main(n: int) -> int:
    from k1prov.fanout import Policy, run_fanout

    def fn(i: int) -> str:
        time.sleep(0.05)
        return f"item {i} " * 40 + "\n"    # ~300 bytes of output per item, kept as the tail

    report = run_fanout(range(n), fn, key=str, policy=Policy(kind="bench.local", item_timeout=30))
    print(f"{len(report.ok)}/{n} ok, final concurrency {report.final_concurrency}")
    return 0 if report.all_ok else 1


@contextlib.contextmanager
def busy_loops(count: int):
    """`count` processes that spin on the CPU until the block ends (every tool in the run
    shares the same load, as on a machine shared with other work)."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(timeout=10)


def median(runs: list[Run], field: str) -> float:
    return statistics.median(getattr(r, field) for r in runs)


def summarize(runs: list[Run]) -> list[dict]:
    rows = []
    keys = sorted({(r.job, r.hosts) for r in runs})
    for job, n in keys:
        group = [r for r in runs if r.job == job and r.hosts == n]
        base = [r for r in group if r.tool == "k1prov"]
        bw, bc = (median(base, "wall"), median(base, "cpu")) if base else (None, None)
        for tool in dict.fromkeys(r.tool for r in group):
            mine = [r for r in group if r.tool == tool]
            w, c = median(mine, "wall"), median(mine, "cpu")
            rows.append({"job": job, "hosts": n, "tool": tool, "runs": len(mine),
                         "failed_runs": sum(not r.ok for r in mine),
                         "wall_median": round(w, 3), "cpu_median": round(c, 3),
                         "maxrss_kb_median": int(median(mine, "maxrss_kb")),
                         "wall_vs_k1prov": round(w / bw, 2) if bw else None,
                         "cpu_vs_k1prov": round(c / bc, 2) if bc else None})
    return rows


def print_table(rows: list[dict]) -> None:
    print(f"\n{'job':7} {'N':>4} {'tool':14} {'wall s':>7} {'cpu s':>7} {'rss MB':>7} "
          f"{'wall/k1':>8} {'cpu/k1':>7} {'fail':>4}")
    for r in rows:
        print(f"{r['job']:7} {r['hosts']:>4} {r['tool']:14} {r['wall_median']:>7.2f} "
              f"{r['cpu_median']:>7.2f} {r['maxrss_kb_median'] / 1024:>7.1f} "
              f"{r['wall_vs_k1prov'] or 0:>8.2f} {r['cpu_vs_k1prov'] or 0:>7.2f} {r['failed_runs']:>4}")


def ensure_venv(venv: Path) -> None:
    if (venv / "bin" / "clush").exists():
        return
    print(f"creating the benchmark venv {venv} ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "-r", str(HERE / "requirements.txt")],
                   check=True, timeout=1800)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="50,200")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--tools", default=",".join(TOOLS))
    ap.add_argument("--jobs", default="true,script")
    ap.add_argument("--fixed", default="1,8,16,32,64", help="k1prov fixed levels ('' to skip)")
    ap.add_argument("--rss", default="200,1000", help="local-transport RSS sizes ('' to skip)")
    ap.add_argument("--bench-venv", type=Path, default=Path(os.environ.get("K1PROV_BENCH_VENV",
                                                                         DEFAULT_BENCH_VENV)))
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--background-load", type=int, default=0, metavar="N",
                    help="N busy-looping processes for the whole run: a shared, loaded machine")
    ap.add_argument("--login-rc", choices=("stock", "machine"), default="stock",
                    help="the farm hosts' login rc files: Debian's stock root dot files "
                         "(default), or this machine's own /root (sshd_farm.py says why)")
    ap.add_argument("--other-k1prov", action="append", default=[], metavar="NAME=PATH",
                    help="another k1prov executable (an older checkout's .venv/bin/k1prov) run "
                         "as tool NAME in the same run; name it in --tools too")
    ap.add_argument("--max-ratios", metavar="WALL,CPU",
                    help="the check before a change to the remote-command path or the pinned "
                         "versions: exit 1 unless k1prov's median wall time and client CPU are "
                         "at most these fractions of clush's, for every job and size")
    # Internal modes: a peer's client program, and the local-transport RSS probe.
    ap.add_argument("--peer", help=argparse.SUPPRESS)
    ap.add_argument("--peer-hosts", help=argparse.SUPPRESS)
    ap.add_argument("--peer-key", help=argparse.SUPPRESS)
    ap.add_argument("--peer-known-hosts", help=argparse.SUPPRESS)
    ap.add_argument("--peer-command", help=argparse.SUPPRESS)
    ap.add_argument("--local-fanout", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.peer:
        return peer_main(args.peer, args.peer_hosts.split(","), args.peer_key,
                         args.peer_known_hosts, args.peer_command)
    if args.local_fanout:
        return local_fanout_main(args.local_fanout)

    sys.path.insert(0, str(HERE))
    from sshd_farm import SshdFarm

    # Here, not at the top: the peers' --peer mode runs in a venv without k1prov.
    from k1prov.fanout.results import level_path

    # SIGTERM unwinds like Ctrl-C, so the farm's sshds are stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    sizes = [int(s) for s in args.sizes.split(",") if s]
    tools = [t for t in args.tools.split(",") if t]
    jobs = [j for j in args.jobs.split(",") if j]
    fixed = [int(c) for c in args.fixed.split(",") if c]
    ensure_venv(args.bench_venv)
    resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000))
    started = time.strftime("%Y%m%d-%H%M%S")
    runs: list[Run] = []
    levels: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="k1prov-bench-") as tmp, \
            SshdFarm(max(sizes), workdir=Path(tmp) / "farm", login_rc=args.login_rc) as farm, \
            busy_loops(args.background_load):
        others = {name: Path(path) for name, _, path in
                  (spec.partition("=") for spec in args.other_k1prov)}
        bench = Bench(farm, args.bench_venv, Path(tmp), others)
        for n in sizes:
            for rep in range(args.repeat):
                order = tools[rep % len(tools):] + tools[:rep % len(tools)]
                for job in jobs:
                    for tool in order:
                        run = bench.run(tool, job, n)
                        runs.append(run)
                        path = f" levels {level_path(run.trace)}" if run.trace else ""
                        print(f"{job:6} N={n:<4} {tool:9} wall {run.wall:6.2f}s cpu {run.cpu:6.2f}s "
                              f"rss {run.maxrss_kb / 1024:6.1f}MB {'ok' if run.ok else 'FAILED ' + run.note}"
                              f"{path}", flush=True)
        if fixed:
            n = max(sizes)
            for rep in range(args.repeat):
                for level in [None] + fixed:
                    run = bench.run("k1prov", "true", n, concurrency=level)
                    levels.append(run)
                    path = f" levels {level_path(run.trace or [])}" if level is None else ""
                    print(f"levels N={n} {run.tool:12} wall {run.wall:6.2f}s cpu {run.cpu:6.2f}s "
                          f"{'ok' if run.ok else 'FAILED ' + run.note}{path}", flush=True)
    rss = [local_rss(n) for n in (int(s) for s in args.rss.split(",") if s)]

    rows = summarize(runs)
    print_table(rows)
    level_rows = summarize(levels)
    if level_rows:
        print_table(level_rows)
    for r in rss:
        print(f"local fan-out {r['items']:>5} items: peak RSS {r['maxrss_kb'] / 1024:.1f} MB, "
              f"wall {r['wall']:.2f}s, cpu {r['cpu']:.2f}s ({r['out']})")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"fanout-{started}.json"
    path.write_text(json.dumps({
        "command": " ".join(shlex.quote(a) for a in sys.argv),
        "machine": {"cpus": os.cpu_count(), "uname": " ".join(os.uname())},
        "background_load": args.background_load, "login_rc": args.login_rc,
        "versions": versions(),
        "summary": rows, "levels": level_rows, "local_rss": rss,
        "runs": [asdict(r) for r in runs], "level_runs": [asdict(r) for r in levels]}, indent=2))
    print(f"\nwritten {path}")
    return check(rows, args.max_ratios) if args.max_ratios else 0


def versions() -> dict:
    """What the figures are for: the interpreter and the transport's libraries of k1prov's venv."""
    probe = ("import sys, importlib.metadata as m; print(sys.version.split()[0]); "
             "[print(n, m.version(n)) for n in ('paramiko', 'cryptography', 'bcrypt', 'PyNaCl', "
             "'fabric', 'invoke')]")
    out = subprocess.run([str(K1PROV.parent / "python"), "-c", probe], capture_output=True,
                         text=True, timeout=60).stdout.split("\n")
    return {"python": out[0], **dict(line.split() for line in out[1:] if line.strip()),
            "openssh": subprocess.run(["ssh", "-V"], capture_output=True, text=True,
                                      timeout=10).stderr.strip()}


def check(rows: list[dict], limits: str) -> int:
    """k1prov against clush in the same run: 0 when within `limits` ("WALL,CPU"), else 1."""
    max_wall, max_cpu = (float(x) for x in limits.split(","))
    failed = False
    for job, n in sorted({(r["job"], r["hosts"]) for r in rows}):
        mine = {r["tool"]: r for r in rows if (r["job"], r["hosts"]) == (job, n)}
        if "k1prov" not in mine or "clush" not in mine:
            print(f"check {job} N={n}: needs a k1prov and a clush run")
            failed = True
            continue
        k1, clush = mine["k1prov"], mine["clush"]
        wall = k1["wall_median"] / clush["wall_median"]
        cpu = k1["cpu_median"] / clush["cpu_median"]
        ok = wall <= max_wall and cpu <= max_cpu and not k1["failed_runs"]
        failed |= not ok
        print(f"check {job} N={n}: k1prov/clush wall {wall:.2f} (at most {max_wall}), "
              f"client CPU {cpu:.2f} (at most {max_cpu}), failed runs {k1['failed_runs']}: "
              f"{'ok' if ok else 'FAILED'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
