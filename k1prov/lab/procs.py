"""Detached service processes with pidfiles: start, recognise as our own, stop.

Each service runs in its own session (start_new_session), so its process group id is
the pid we record and stopping it reaches its children too (gunicorn's worker, Ironic's
cotyledon workers, the ipmitool processes Ironic runs).

A pid alone does not prove a process is ours: pids are reused. Next to root/run/<svc>.pid
(plain pid, for people and other tools) we keep root/run/<svc>.json with the leader's
start time (field 22 of /proc/PID/stat) and a fingerprint of the service's command and
configuration. A process group is ours if its leader has that start time, or if the
leader is gone and members remain (Linux does not hand out a pid that is still some
group's id, so such members can only be the ones we started). Nothing else is ever
signalled.
"""
from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from k1prov.atomic_file import write_atomic
from k1prov.errors import LabError

# SIGTERM -> SIGKILL grace when stopping one service. Ironic is configured to finish its
# graceful shutdown within 5 s (see config.render_ironic_conf).
STOP_GRACE = 10.0
# How often waits re-check a process or a port.
POLL_INTERVAL = 0.1
# How long a port of a service just stopped may stay bound: the kernel closes a process's
# sockets when its last thread has exited, which can lag behind the leader becoming a
# zombie (what _wait_group_gone sees) on a loaded machine.
PORT_RELEASE_WAIT = 10.0


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    cwd: Path
    # (protocol, port) pairs the service binds on 127.0.0.1: "tcp" or "udp".
    ports: tuple[tuple[str, int], ...]
    # Changes when the command or its configuration changes: a running service with
    # another fingerprint is restarted by `up`.
    fingerprint: str


@dataclass(frozen=True)
class Running:
    pid: int
    start_time: int
    fingerprint: str


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, pgid, start_time) of a process, None if it does not exist."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) may contain spaces and parentheses; split after it.
    fields = raw[raw.rindex(")") + 2:].split()
    return fields[0], int(fields[2]), int(fields[19])


def _reap(pid: int) -> None:
    """Collect the exit status if the process is our child (tests run up and down in one
    process); otherwise init does it."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def process_alive(pid: int) -> bool:
    _reap(pid)
    st = _stat(pid)
    return st is not None and st[0] not in ("Z", "X")


def group_members(pgid: int) -> list[int]:
    """Live processes (not zombies) whose process group is `pgid`."""
    members = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        st = _stat(int(entry.name))
        if st is not None and st[1] == pgid and st[0] not in ("Z", "X"):
            members.append(int(entry.name))
    return members


def group_rss_kib(pgid: int) -> int:
    """Resident memory of a process group, summed over its members (VmRSS, KiB)."""
    total = 0
    for pid in group_members(pgid):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
                    break
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def pidfile(run_dir: Path, name: str) -> Path:
    return run_dir / f"{name}.pid"


def _metafile(run_dir: Path, name: str) -> Path:
    return run_dir / f"{name}.json"


def read_running(run_dir: Path, name: str) -> Running | None:
    """The recorded process of a service if it (or its group) still runs and is ours."""
    try:
        meta = json.loads(_metafile(run_dir, name).read_text())
        rec = Running(int(meta["pid"]), int(meta["start_time"]), str(meta["fingerprint"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return rec if _is_ours(rec) else None


def _is_ours(rec: Running) -> bool:
    _reap(rec.pid)
    st = _stat(rec.pid)
    if st is not None:
        return st[2] == rec.start_time and st[0] not in ("Z", "X")
    return bool(group_members(rec.pid))


def port_free(proto: str, port: int) -> bool:
    """True if nothing is bound to 127.0.0.1:port (or the wildcard address)."""
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as s:
        if proto == "tcp":
            # Ignore TIME_WAIT leftovers of a service we just stopped; a listener still fails.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise LabError(f"cannot test {proto} port {port}: {exc.strerror}") from None
    return True


def port_holders(proto: str, port: int) -> list[str]:
    """Who holds a local port, as "pid N (command line)": read from /proc/net and the
    processes' socket descriptors, so that a port conflict names its program."""
    inodes = set()
    for table in (f"/proc/net/{proto}", f"/proc/net/{proto}6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and int(fields[1].rsplit(":", 1)[1], 16) == port:
                # A TCP client connected from this port is not a holder; a listener is (0A).
                if proto == "tcp" and fields[3] != "0A":
                    continue
                inodes.add(f"socket:[{fields[9]}]")
    holders = []
    if not inodes:
        return holders
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fds = os.listdir(f"/proc/{entry.name}/fd")
            if not any(os.readlink(f"/proc/{entry.name}/fd/{fd}") in inodes for fd in fds):
                continue
            cmd = Path(f"/proc/{entry.name}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        holders.append(f"pid {entry.name} ({cmd.strip()[:120]})")
    return holders


def start(spec: ServiceSpec, *, run_dir: Path, log_dir: Path) -> Running:
    """Start a service detached, stdout/stderr appended to log_dir/<name>.log."""
    run_dir.mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{spec.name}.log"
    with open(log_path, "ab") as log:
        log.write(f"\n==== k1prov lab: starting {spec.name} at {time.ctime()}\n".encode())
        log.flush()
        try:
            proc = subprocess.Popen(
                list(spec.argv), cwd=spec.cwd, env=dict(spec.env), stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
        except OSError as exc:
            raise LabError(f"cannot start {spec.name} ({spec.argv[0]}): {exc.strerror}") from None
    st = _stat(proc.pid)
    rec = Running(proc.pid, st[2] if st else 0, spec.fingerprint)
    meta = json.dumps({"pid": rec.pid, "start_time": rec.start_time,
                       "fingerprint": rec.fingerprint, "argv": list(spec.argv)})
    write_atomic(_metafile(run_dir, spec.name), meta + "\n")
    write_atomic(pidfile(run_dir, spec.name), f"{rec.pid}\n")
    # Popen would warn when garbage-collected with the child still running; the child is
    # meant to outlive us, and _reap collects it if we are still its parent at `down`.
    proc.returncode = 0
    return rec


def stop(run_dir: Path, name: str, *, grace: float) -> bool:
    """Stop a service's process group: SIGTERM, then SIGKILL after `grace` seconds.

    Returns True if something was running. Removes the pidfiles either way. Idempotent.
    """
    try:
        meta = json.loads(_metafile(run_dir, name).read_text())
        rec = Running(int(meta["pid"]), int(meta["start_time"]), str(meta["fingerprint"]))
    except (OSError, ValueError, KeyError, TypeError):
        rec = None
    was_running = False
    if rec is not None and _is_ours(rec):
        was_running = True
        _signal_group(rec.pid, signal.SIGTERM)
        if not _wait_group_gone(rec.pid, timeout=grace):
            _signal_group(rec.pid, signal.SIGKILL)
            if not _wait_group_gone(rec.pid, timeout=grace):
                raise LabError(f"{name} (process group {rec.pid}) survives SIGKILL")
    for path in (pidfile(run_dir, name), _metafile(run_dir, name)):
        try:
            path.unlink()
        except FileNotFoundError:
            pass
    return was_running


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _wait_group_gone(pgid: int, *, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if not group_members(pgid):
            # The leader may be a zombie child of ours (when this process started it):
            # collect it so that it disappears from the process table.
            _reap(pgid)
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_INTERVAL)


def wait_ports_free(ports: tuple[tuple[str, int], ...], *, timeout: float) -> list[tuple[str, int]]:
    """Wait until every port is free; return those still busy after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        busy = [(proto, port) for proto, port in ports if not port_free(proto, port)]
        if not busy or time.monotonic() >= deadline:
            return busy
        time.sleep(POLL_INTERVAL)


def log_tail(log_dir: Path, name: str, *, lines: int = 15) -> str:
    try:
        text = (log_dir / f"{name}.log").read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
