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
import io
import logging
import shlex
import socket
from dataclasses import dataclass
from pathlib import Path

import paramiko
from fabric import Config, Connection
from invoke.exceptions import CommandTimedOut
from paramiko.config import SSHConfig

from k1prov.errors import TransportError

log = logging.getLogger("k1prov.ssh")


@dataclass(frozen=True)
class SshTarget:
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


def _pin_host_keys(client: paramiko.SSHClient, known_hosts: Path | None, host: str,
                   address: str, port: int) -> None:
    if known_hosts is None:
        client.set_missing_host_key_policy(_LoggedAutoAdd())
        return
    try:
        pinned = paramiko.HostKeys(str(known_hosts))
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


def _connection(target: SshTarget, *, connect_timeout: float) -> Connection:
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
    if isinstance(exc, CommandTimedOut):
        return TransportError(host, f"command timed out after {exc.timeout:g}s")
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
                command_timeout: float) -> CommandResult:
    """Run one command; a non-zero exit is a result, not an error."""
    conn = _connection(target, connect_timeout=connect_timeout)
    try:
        conn.open()
        res = conn.run(command, hide=True, warn=True, in_stream=False, pty=False,
                       timeout=command_timeout)
        return CommandResult(target.host, res.exited, res.stdout, res.stderr)
    except Exception as exc:  # noqa: BLE001 - translated at the boundary
        raise translate(exc, target.host) from exc
    finally:
        _close(conn)


class _ScriptStream(io.StringIO):
    """The script as the remote command's stdin, handed over in large pieces.

    invoke reads an in_stream that is not a terminal one character per call, with a
    10 ms pause after each (Runner.input_sleep): about 100 bytes/s, minutes for a
    role script. This stream ignores the size asked for and returns up to CHUNK
    characters; an empty read then makes invoke close the channel's write side (the
    remote `cat` sees EOF). Fabric keeps its own stdout/stderr readers and timeout."""

    CHUNK = 1 << 16

    def read(self, size: int | None = -1) -> str:
        return super().read(self.CHUNK)


# Exit code and stderr marker of the wrapper when it cannot stage the script (the
# marker, not the code, tells it from a script that exits 125 on its own).
_STAGE_FAILED = 125
_STAGE_MARKER = "K1PROV-PUSH-ERROR"


def _stage_failed(what: str) -> str:
    return f"{{ echo {_STAGE_MARKER} {what} >&2; exit {_STAGE_FAILED}; }}"


def push_command(remote_dir_prefix: str, *, as_root: bool) -> str:
    """The one remote command of put_and_run: reads the script from stdin into a
    private directory, runs it with stdin from /dev/null, removes the directory and
    exits with the script's exit code."""
    template = shlex.quote(f"{remote_dir_prefix}XXXXXXXX")
    run = 'sudo -n "$d/script"' if as_root else '"$d/script"'
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
                sudo: bool = False, connect_timeout: float,
                command_timeout: float) -> CommandResult:
    """Run a script from a private mktemp -d directory (mode 700), then remove it.

    One SSH session: the script travels on the stdin of a small wrapper
    (`push_command`), so a push costs one channel instead of four (mktemp, SFTP,
    run, rm); each session costs sshd a fork and a login."""
    as_root = sudo and target.user != "root"
    conn = _connection(target, connect_timeout=connect_timeout)
    try:
        conn.open()
        res = conn.run(push_command(remote_dir_prefix, as_root=as_root), hide=True, warn=True,
                       in_stream=_ScriptStream(script_text), pty=False, timeout=command_timeout)
        staging = _stage_error(res.stderr) if res.exited == _STAGE_FAILED else None
        if staging:
            raise TransportError(target.host, staging)
        return CommandResult(target.host, res.exited, res.stdout, res.stderr)
    except Exception as exc:  # noqa: BLE001 - translated at the boundary
        raise translate(exc, target.host) from exc
    finally:
        _close(conn)
