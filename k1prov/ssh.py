"""The SSH transport (Fabric/paramiko): run a command or push-and-run a script on one host.

This is the one module that talks to paramiko and Fabric; their exceptions are turned
into TransportError(host, reason, transient=...) here. Transient means "may work if
tried again soon and may be caused by too many of us at once" (refused, reset, timed
out, banner not read): the fan-out engine retries those and backs off its concurrency.
Authentication failures and host key problems are never transient.

Nothing here reads the user's ~/.ssh/config or /etc/ssh/ssh_config (an explicit empty
SSHConfig), nor Invoke/Fabric config files (lazy Config), and with a key file given no
agent and no ~/.ssh keys are tried.
"""
from __future__ import annotations

import errno
import functools
import logging
import os
import select
import shlex
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import paramiko
from fabric import Config, Connection
from paramiko.config import SSHConfig

from k1prov.errors import TransportError
from k1prov.fanout.cancel import CancelToken, current_cancel
from k1prov.settings import DEFAULT_TIMEOUTS

log = logging.getLogger("k1prov.ssh")


@dataclass(frozen=True)
class SshTarget:
    """One host as the transport sees it: where to connect, as whom, with which key, and
    which host keys to accept. Built by the verb context from an inventory node."""
    host: str                        # inventory name (used in messages and results)
    address: str                     # where to connect
    user: str = "root"
    port: int = 22
    key_filename: str | None = None
    known_hosts: Path | None = None  # pinned host keys: unknown or mismatched key = error
    gateway: str | None = None       # "user@host:port" jump host


@dataclass(frozen=True)
class CommandResult:
    host: str
    exit_code: int
    stdout: str
    stderr: str

    # The engine's command-result protocol (same names as invoke's Result).
    @property
    def exited(self) -> int:
        return self.exit_code

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


class _LoggedAutoAdd(paramiko.MissingHostKeyPolicy):
    """Without pinned keys: accept (trust on first use, in memory only) but say so."""

    def missing_host_key(self, client, hostname, key):
        log.warning("%s: host key not pinned, accepting %s %s", hostname, key.get_name(),
                    key.get_fingerprint().hex())
        client.get_host_keys().add(hostname, key.get_name(), key)


def _known_name(address: str, port: int) -> str:
    # How OpenSSH and paramiko name a host in known_hosts.
    return address if port == 22 else f"[{address}]:{port}"


def _fabric_config() -> Config:
    return Config(ssh_config=SSHConfig(), runtime_ssh_path=None, lazy=True,
                  overrides={"load_ssh_configs": False, "forward_agent": False})


def _parse_gateway(spec: str, default_user: str) -> tuple[str, str, int]:
    user, _, hostport = spec.rpartition("@")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        host, port = hostport, "22"
    return user or default_user, host, int(port)


@dataclass(frozen=True)
class _PinnedKeys:
    """A known_hosts file read once: plain names indexed, hashed entries kept apart.

    paramiko's HostKeys does a linear scan per lookup, and its load() checks each new
    line against every earlier one, so reading the pinned file for each connection made
    a fan-out's client CPU grow with the square of its hosts (200 hosts: ~10 ms a
    connection; 1,000: ~200 ms)."""
    by_name: dict[str, dict[str, paramiko.PKey]]
    hashed: tuple[tuple[str, str, paramiko.PKey], ...]    # (|1|salt|hash entry, type, key)

    def lookup(self, name: str) -> dict[str, paramiko.PKey]:
        found = dict(self.by_name.get(name, {}))
        for entry, key_type, key in self.hashed:
            salt = entry.split("|")[2]
            if paramiko.HostKeys.hash_host(name, salt) == entry:
                found.setdefault(key_type, key)
        return found


@functools.lru_cache(maxsize=8)
def _read_pinned(path: str, identity: tuple[int, int, int, int]) -> _PinnedKeys:
    # Keyed by the file's identity (device, inode, size, mtime): a file rewritten between
    # two connections (deploy pins a new key) is read again. The value is never changed
    # after it is made, so threads can share it.
    del identity
    by_name: dict[str, dict[str, paramiko.PKey]] = {}
    hashed: list[tuple[str, str, paramiko.PKey]] = []
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            try:
                entry = paramiko.hostkeys.HostKeyEntry.from_line(line, lineno)
            except paramiko.SSHException:
                continue
            if entry is None:
                continue
            key_type = entry.key.get_name()
            for name in entry.hostnames:
                if name.startswith("|1|"):
                    hashed.append((name, key_type, entry.key))
                else:
                    # The first line for a (name, type) wins, as in OpenSSH.
                    by_name.setdefault(name, {}).setdefault(key_type, entry.key)
    return _PinnedKeys(by_name, tuple(hashed))


def _pin_host_keys(client: paramiko.SSHClient, known_hosts: Path | None, host: str,
                   address: str, port: int) -> None:
    if known_hosts is None:
        client.set_missing_host_key_policy(_LoggedAutoAdd())
        return
    try:
        st = os.stat(known_hosts)
        pinned = _read_pinned(str(known_hosts), (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))
    except OSError as exc:
        raise TransportError(host, f"cannot read pinned host keys {known_hosts}: "
                                   f"{exc.strerror or exc}") from exc
    # Accept entries written for the address or for the inventory name.
    target_name = _known_name(address, port)
    for name in (target_name, _known_name(host, port), address, host):
        entry = pinned.lookup(name)
        if entry:
            for key_type, key in entry.items():
                client.get_host_keys().add(target_name, key_type, key)
            break
    client.set_missing_host_key_policy(paramiko.RejectPolicy())


def connection(target: SshTarget, *, connect_timeout: float) -> Connection:
    """An unopened Fabric connection to `target` with k1prov's settings: no ssh_config, the
    key file alone, the pinned host keys (or trust on first use, logged), the gateway."""
    connect_kwargs: dict = {"timeout": connect_timeout, "banner_timeout": connect_timeout,
                            "auth_timeout": connect_timeout, "channel_timeout": connect_timeout}
    if target.key_filename:
        connect_kwargs.update(key_filename=[target.key_filename], allow_agent=False,
                              look_for_keys=False)
    config = _fabric_config()
    gateway = None
    if target.gateway:
        g_user, g_host, g_port = _parse_gateway(target.gateway, target.user)
        gateway = Connection(g_host, user=g_user, port=g_port, config=config,
                             connect_kwargs=dict(connect_kwargs), forward_agent=False)
        _pin_host_keys(gateway.client, target.known_hosts, g_host, g_host, g_port)
    conn = Connection(target.address, user=target.user, port=target.port, config=config,
                      connect_kwargs=connect_kwargs, gateway=gateway, forward_agent=False)
    _pin_host_keys(conn.client, target.known_hosts, target.host, target.address, target.port)
    return conn


def _close(conn: Connection) -> None:
    for c in (conn, conn.gateway if isinstance(conn.gateway, Connection) else None):
        if c is not None:
            try:
                c.close()
            except Exception:  # noqa: BLE001 - closing a broken connection may fail again
                pass


_TRANSIENT_ERRNOS = {errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED, errno.ETIMEDOUT,
                     errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EPIPE}


def translate(exc: BaseException, host: str) -> TransportError:
    """A paramiko/Fabric/socket exception as a TransportError with a short reason."""
    if isinstance(exc, TransportError):
        return exc
    if isinstance(exc, paramiko.BadHostKeyException):
        return TransportError(host, f"host key mismatch (got {exc.key.get_name()} "
                                    f"{exc.key.get_fingerprint().hex()}, pinned key differs)")
    if isinstance(exc, paramiko.AuthenticationException):
        return TransportError(host, f"authentication failed: {exc}")
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
        codes = {getattr(e, "errno", None) for e in exc.errors.values()}
        if codes == {errno.ECONNREFUSED}:
            return TransportError(host, "connection refused", transient=True)
        return TransportError(host, f"cannot connect: {exc}", transient=True)
    if isinstance(exc, socket.gaierror):
        return TransportError(host, f"cannot resolve address: {exc}")
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return TransportError(host, "connection timed out", transient=True)
    if isinstance(exc, (EOFError, ConnectionResetError, ConnectionRefusedError,
                        ConnectionAbortedError, BrokenPipeError)):
        return TransportError(host, f"connection lost: {type(exc).__name__}", transient=True)
    if isinstance(exc, paramiko.ChannelException):
        # Opening the channel through the gateway failed: target down or still booting.
        return TransportError(host, f"gateway could not reach the host: {exc}", transient=True)
    if isinstance(exc, paramiko.SSHException):
        text = str(exc)
        if "not found in known_hosts" in text:
            return TransportError(host, "host key not in the pinned known_hosts")
        if "protocol banner" in text:
            return TransportError(host, "no SSH banner within the connect timeout "
                                        "(the host or its sshd does not answer)", transient=True)
        if "No existing session" in text:
            # paramiko's start_client gives up silently at its timeout, then the login
            # finds no session: the handshake did not finish in time.
            return TransportError(host, "no SSH handshake within the connect timeout "
                                        "(the host or its sshd does not answer)", transient=True)
        # sshd drops connections beyond MaxStartups before the banner: too many of us.
        transient = any(s in text for s in ("protocol banner", "reset", "EOF", "timed out"))
        return TransportError(host, f"ssh error: {text}", transient=transient)
    if isinstance(exc, OSError):
        return TransportError(host, f"network error: {exc.strerror or exc}",
                              transient=exc.errno in _TRANSIENT_ERRNOS)
    return TransportError(host, f"{type(exc).__name__}: {exc}")


def run_command(target: SshTarget, command: str, *, connect_timeout: float,
                command_timeout: float, cancel: CancelToken | None = None,
                kill_grace: float = DEFAULT_TIMEOUTS.ssh_kill_grace,
                alive_timeout: float = DEFAULT_TIMEOUTS.ssh_alive) -> CommandResult:
    """Run one command; a non-zero exit is a result, not an error.

    The command runs in a session of its own on the host (`session_command`). When
    k1prov gives up on it (`command_timeout`; `cancel`, by default the token of the
    fan-out item this thread runs; Ctrl-C) the whole session is ended on the host and
    the error says how it went."""
    cancel = cancel if cancel is not None else current_cancel()
    conn = connection(target, connect_timeout=connect_timeout)
    try:
        conn.open()
        return _execute(conn, target, command, stdin_text=None, connect_timeout=connect_timeout,
                        command_timeout=command_timeout, cancel=cancel, kill_grace=kill_grace,
                        as_root=False, alive_timeout=alive_timeout)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - translated at the boundary
        raise translate(exc, target.host) from exc
    finally:
        _close(conn)


# ---------------------------------------------------------------- ending what we give up on

# First stderr line of a session_command: the id of the command's session on the host.
_SID_MARKER = "K1PROV-SID"

# POSIX sh, run as `sh -c WRAPPER k1prov PAYLOAD` (PAYLOAD is "$1"). The payload runs with
# the user's login shell ($SHELL, set by sshd: what sshd itself would have used) in a
# new session (setsid: its own process group too) whose id it announces on stderr before
# anything else, so that k1prov can end it with everything it started: over a second
# channel when it gives up (_end_remote), and through the watchdog below when the SSH
# session itself goes away (k1prov killed, network lost). The watchdog polls once a second
# whether sshd's session process (the wrapper's parent) is still there (kill -0; /proc
# when a non-root user may not signal it); it never holds the
# channel's output open, and it is stopped as soon as the payload ends by itself. Without
# setsid (not Linux) the payload runs as a plain child and only the watchdog can end it.
#
# SHLVL=1 tells the payload's shell that it is not the first: bash re-reads ~/.bashrc when
# its stdin is a socket ("run by sshd") and it thinks itself the top-level shell, and sshd's
# own shell (which has read the rc files once, its exported settings reach the payload)
# passes SHLVL=0 on as it execs the wrapper. That second read doubled the host's CPU per
# command where the rc files are heavy (pyenv's init: ~100 ms a shell), and with sshd on
# the same cores every command of a fan-out cost twice (benchmarks/README.md, 2026-12-07).
_WRAPPER = r"""
k1_lead='echo "K1PROV-SID $$" >&2; SHLVL=1; export SHLVL; exec "${SHELL:-/bin/sh}" -c "$1"'
exec 3<&0
if command -v setsid >/dev/null 2>&1; then
  setsid sh -c "$k1_lead" k1prov "$1" <&3 3<&- &
else
  sh -c "$k1_lead" k1prov "$1" <&3 3<&- &
fi
k1_sid=$!
exec 3<&-
k1_parent=$PPID
k1_alive() { kill -0 "$1" 2>/dev/null || { [ -d /proc/1 ] && [ -d "/proc/$1" ]; }; }
(
  while k1_alive "$k1_parent" && k1_alive "$k1_sid"; do sleep 1; done
  if k1_alive "$k1_sid"; then
    kill -TERM -- "-$k1_sid" 2>/dev/null || kill -TERM "$k1_sid"
    pkill -TERM -s "$k1_sid" 2>/dev/null
    sleep GRACE
    kill -KILL -- "-$k1_sid" 2>/dev/null
    pkill -KILL -s "$k1_sid" 2>/dev/null
  fi
) </dev/null >/dev/null 2>&1 &
k1_watch=$!
wait "$k1_sid"
k1_rc=$?
kill "$k1_watch" 2>/dev/null
exit "$k1_rc"
"""

# Run over a second channel: SIGTERM to the session's process group and every process of
# the session, up to GRACE seconds for them to go, then SIGKILL; says which it took.
_KILL = r"""
s=SID; n=STEPS
k1_any() { kill -0 -- "-$s" 2>/dev/null || pgrep -s "$s" >/dev/null 2>&1; }
k1_any || { echo gone; exit 0; }
kill -TERM -- "-$s" 2>/dev/null; pkill -TERM -s "$s" 2>/dev/null
while [ "$n" -gt 0 ] && k1_any; do sleep 0.1; n=$((n - 1)); done
if k1_any; then
  kill -KILL -- "-$s" 2>/dev/null; pkill -KILL -s "$s" 2>/dev/null; echo killed
else
  echo ended
fi
"""


def session_command(payload: str, *, kill_grace: float = DEFAULT_TIMEOUTS.ssh_kill_grace) -> str:
    """The remote command that runs `payload` (a shell command line) in a session of its
    own on the host, announced on stderr, watched while the SSH session lasts."""
    wrapper = _WRAPPER.replace("GRACE", f"{max(kill_grace, 0.1):g}")
    return f"exec sh -c {shlex.quote(wrapper)} k1prov {shlex.quote(payload)}"


def kill_command(sid: int, *, kill_grace: float, as_root: bool) -> str:
    """The remote command that ends session `sid` (see _KILL)."""
    script = _KILL.replace("SID", str(int(sid))).replace(
        "STEPS", str(max(1, int(kill_grace * 10))))
    return f"{'sudo -n ' if as_root else ''}sh -c {shlex.quote(script)}"


# How much stderr may come before the session id's line (what a login shell's rc files
# print); past it, the line is not looked for any more.
_MARKER_WITHIN = 64 * 1024


class _Output:
    """stdout and stderr of a channel, read as they come; the session id's line taken out
    of stderr."""

    def __init__(self) -> None:
        self.out, self.err = bytearray(), bytearray()
        self.sid: int | None = None
        self._head = True          # still looking for the marker line in stderr

    def drain(self, chan: paramiko.Channel) -> bool:
        """Read what has come; True when something had."""
        before = len(self.out) + len(self.err)
        while chan.recv_ready():
            self.out += chan.recv(1 << 16)
        while chan.recv_stderr_ready():
            self.err += chan.recv_stderr(1 << 16)
        if self._head:
            before -= self._take_marker()
        return len(self.out) + len(self.err) != before

    def _take_marker(self) -> int:
        """Take the session id's line out of stderr; returns the bytes taken. It is not
        always the first line: the user's login shell may write before the wrapper runs (a
        ~/.bashrc whose `pyenv rehash` raced another shell was seen), and what it wrote
        stays in the output."""
        if len(self.err) > _MARKER_WITHIN:
            self._head = False                     # not a wrapped command: stop looking
            return 0
        lines = bytes(self.err).split(b"\n")
        for i, line in enumerate(lines[:-1]):      # complete lines only
            words = line.split()
            if len(words) == 2 and words[0] == _SID_MARKER.encode() and words[1].isdigit():
                self.sid, self._head = int(words[1]), False
                self.err = bytearray(b"\n".join(lines[:i] + lines[i + 1:]))
                return len(line) + 1
        return 0

    def text(self) -> tuple[str, str]:
        return (bytes(self.out).decode("utf-8", "replace"),
                bytes(self.err).decode("utf-8", "replace"))


# How often the wait for a command looks at its deadline and its cancel token.
_POLL = 0.2
# Keepalives sent to a silent host before it counts as gone (OpenSSH's ServerAliveCountMax).
_ALIVE_PROBES = 3
# A global request sshd does not know and answers all the same (with a failure), as
# OpenSSH's client sends it for ServerAliveInterval.
_KEEPALIVE_REQUEST = "keepalive@openssh.com"


class _Alive:
    """Whether the host still answers while a command prints nothing: after
    `alive_timeout / _ALIVE_PROBES` seconds of silence a keepalive request that wants an
    answer; a host that said nothing, not even to those, for `alive_timeout` seconds is
    gone (powered off, cut off: no FIN or RST ever comes, and TCP alone would wait out
    the command timeout). paramiko's own keepalive wants no answer, so it tells nothing."""

    def __init__(self, transport: paramiko.Transport, alive_timeout: float):
        self.transport = transport
        self.timeout = alive_timeout
        self.heard = time.monotonic()
        self._asking: threading.Thread | None = None

    def heard_now(self) -> None:
        self.heard = time.monotonic()

    def silent_for(self) -> float:
        """Seconds since the host last said anything; sends a keepalive when due."""
        now = time.monotonic()
        if self._asking is None and now - self.heard >= self.timeout / _ALIVE_PROBES:
            # global_request(wait=True) blocks until the answer or the end of the
            # transport (closed with the connection), so it waits in a thread of its own.
            self._asking = threading.Thread(target=self._ask, name="k1prov-ssh-alive", daemon=True)
            self._asking.start()
        return now - self.heard

    def _ask(self) -> None:
        try:
            self.transport.global_request(_KEEPALIVE_REQUEST, wait=True)
        except Exception:  # noqa: BLE001 - a transport that broke shows in the command's wait
            return
        if self.transport.is_active():
            self.heard = time.monotonic()
        self._asking = None
# Given up before the host announced the command's session: how long to wait for it.
_SID_WAIT = 2.0


def _execute(conn: Connection, target: SshTarget, payload: str, *, stdin_text: str | None,
             connect_timeout: float, command_timeout: float, cancel: CancelToken | None,
             kill_grace: float, as_root: bool, alive_timeout: float) -> CommandResult:
    transport = conn.client.get_transport()
    chan = transport.open_session(timeout=connect_timeout)
    output = _Output()
    alive = _Alive(transport, alive_timeout)
    deadline = time.monotonic() + command_timeout
    why: str | None = None
    interrupted = False
    try:
        chan.exec_command(session_command(payload, kill_grace=kill_grace))
        if stdin_text:
            chan.settimeout(command_timeout)
            chan.sendall(stdin_text.encode())
            chan.settimeout(None)
        chan.shutdown_write()          # the payload's stdin ends here (like ssh -n)
        while True:
            if output.drain(chan):
                alive.heard_now()
            if chan.exit_status_ready() and (chan.eof_received or chan.closed):
                output.drain(chan)
                break
            if chan.closed:
                # The connection dropped under a running command: not transient (a retry
                # could run it twice); the watchdog on the host ends what is left.
                raise TransportError(target.host, "connection lost while the command ran")
            if cancel is not None and cancel.is_set():
                why = cancel.reason or "cancelled"
                break
            left = deadline - time.monotonic()
            if left <= 0:
                why = f"command timed out after {command_timeout:g}s"
                break
            if alive.silent_for() >= alive_timeout:
                # Nothing can end the command on a host that does not answer (and a
                # powered-off one runs nothing): not transient, a retry could run it twice.
                raise TransportError(target.host, f"the host stopped answering while the command ran "
                                                  f"(not a word from it for {alive_timeout:g} s, "
                                                  f"keepalives included): powered off or cut off?")
            select.select([chan], [], [], min(_POLL, left))
    except KeyboardInterrupt:
        why, interrupted = "interrupted", True
    except socket.timeout:
        why = f"command timed out after {command_timeout:g}s"
    if why is None:
        stdout, stderr = output.text()
        return CommandResult(target.host, chan.recv_exit_status(), stdout, stderr)
    _await_sid(chan, output)
    ended = _end_remote(transport, output.sid, connect_timeout=connect_timeout,
                        kill_grace=kill_grace, as_root=as_root)
    log.info("%s: %s; %s", target.host, why, ended)
    if interrupted:
        log.warning("%s: interrupted; %s", target.host, ended)
        raise KeyboardInterrupt
    raise TransportError(target.host, f"{why}; {ended}")


def _await_sid(chan: paramiko.Channel, output: _Output) -> None:
    """Given up right after the start: the session id may still be on its way."""
    until = time.monotonic() + _SID_WAIT
    try:
        while output.sid is None and not chan.closed and time.monotonic() < until:
            select.select([chan], [], [], _POLL)
            output.drain(chan)
    except (OSError, EOFError, paramiko.SSHException):
        pass


def _end_remote(transport: paramiko.Transport, sid: int | None, *, connect_timeout: float,
                kill_grace: float, as_root: bool) -> str:
    """End session `sid` on the host over a second channel; says how it went."""
    fallback = "its watchdog ends it when the SSH session closes"
    if sid is None:
        return f"its session id never arrived; {fallback}"
    try:
        chan = transport.open_session(timeout=connect_timeout)
        chan.settimeout(kill_grace + connect_timeout)
        chan.exec_command(kill_command(sid, kill_grace=kill_grace, as_root=as_root))
        chan.shutdown_write()
        answer = chan.makefile("rb").read().decode("utf-8", "replace").strip()
    except Exception as exc:  # noqa: BLE001 - the report says what happened instead
        return f"could not end it on the host ({type(exc).__name__}: {exc}); {fallback}"
    return {"ended": "ended on the host (SIGTERM to its session)",
            "killed": f"killed on the host (SIGKILL: still running {kill_grace:g}s after SIGTERM)",
            "gone": "it had already ended on the host"}.get(
        answer.split()[-1] if answer else "", f"ending it on the host said {answer[:80]!r}; {fallback}")


# Exit code and stderr marker of the wrapper when it cannot stage the script (the
# marker, not the code, tells it from a script that exits 125 on its own).
_STAGE_FAILED = 125
_STAGE_MARKER = "K1PROV-PUSH-ERROR"


def _stage_failed(what: str) -> str:
    return f"{{ echo {_STAGE_MARKER} {what} >&2; exit {_STAGE_FAILED}; }}"


def push_command(remote_dir_prefix: str, *, as_root: bool, args: Sequence[str] = ()) -> str:
    """The one remote command of put_and_run: reads the script from stdin into a
    private directory, runs it with `args` (each quoted: the script gets them as
    they were given, as with Ansible's `script` module) and stdin from /dev/null,
    removes the directory and exits with the script's exit code."""
    template = shlex.quote(f"{remote_dir_prefix}XXXXXXXX")
    run = 'sudo -n "$d/script"' if as_root else '"$d/script"'
    if args:
        run += " " + " ".join(shlex.quote(arg) for arg in args)
    return "; ".join([
        f"d=$(mktemp -d {template}) || " + _stage_failed("cannot create a remote temporary directory"),
        # EXIT covers the normal end; the signals become an exit so that EXIT runs too.
        "trap 'rm -rf -- \"$d\"' EXIT",
        "trap 'exit 129' HUP; trap 'exit 130' INT; trap 'exit 143' TERM",
        # umask only for the copy: the script keeps the session's umask (files it creates).
        'chmod 700 "$d" && (umask 077 && cat > "$d/script") && chmod 700 "$d/script" || '
        + _stage_failed("cannot write the script into the remote temporary directory"),
        f"{run} < /dev/null",
    ])


def _stage_error(stderr: str) -> str | None:
    """The wrapper's own failure (its marker on the last line), with the failing
    command's message before it; None when the script itself ran."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    if not lines or not lines[-1].startswith(_STAGE_MARKER):
        return None
    reason = lines[-1][len(_STAGE_MARKER):].strip()
    detail = " ".join(lines[:-1]).strip()[:200]
    return f"{reason}: {detail}" if detail else reason


def put_and_run(target: SshTarget, script_text: str, *, remote_dir_prefix: str = "/tmp/k1prov.",
                sudo: bool = False, args: Sequence[str] = (), connect_timeout: float,
                command_timeout: float, cancel: CancelToken | None = None,
                kill_grace: float = DEFAULT_TIMEOUTS.ssh_kill_grace,
                alive_timeout: float = DEFAULT_TIMEOUTS.ssh_alive) -> CommandResult:
    """Run a script from a private mktemp -d directory (mode 700), then remove it.

    One SSH session: the script travels on the stdin of a small wrapper
    (`push_command`), so a push costs one channel instead of four (mktemp, SFTP,
    run, rm); each session costs sshd a fork and a login."""
    as_root = sudo and target.user != "root"
    cancel = cancel if cancel is not None else current_cancel()
    conn = connection(target, connect_timeout=connect_timeout)
    try:
        conn.open()
        res = _execute(conn, target, push_command(remote_dir_prefix, as_root=as_root, args=args),
                       stdin_text=script_text, connect_timeout=connect_timeout,
                       command_timeout=command_timeout, cancel=cancel, kill_grace=kill_grace,
                       as_root=as_root, alive_timeout=alive_timeout)
        staging = _stage_error(res.stderr) if res.exit_code == _STAGE_FAILED else None
        if staging:
            raise TransportError(target.host, staging)
        return res
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - translated at the boundary
        raise translate(exc, target.host) from exc
    finally:
        _close(conn)
