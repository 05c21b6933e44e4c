"""Real sshd processes on 127.0.0.1 (one per port, each with its own host key) driven
through run_fanout + k1prov.ssh: outputs per host, pinned host keys, dead ports,
gateways, script push, and that ~/.ssh/config is never read."""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, replace
from pathlib import Path

import paramiko
import pytest

from k1prov.errors import TransportError
from k1prov.fanout import Policy, Status, fold_hosts, run_fanout
from k1prov.ssh import SshTarget, put_and_run, run_command

pytestmark = pytest.mark.lab

SSHD = "/usr/sbin/sshd"
CONNECT = 5.0
COMMAND = 20.0


def _ensure_sshd() -> None:
    if os.path.exists(SSHD):
        return
    if os.geteuid() != 0:
        pytest.skip("sshd missing and not root")
    proc = subprocess.run(["apt-get", "install", "-y", "openssh-server"], capture_output=True,
                          text=True, timeout=600)
    if proc.returncode != 0 or not os.path.exists(SSHD):
        pytest.skip(f"cannot install openssh-server: {proc.stderr[-300:]}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path.with_suffix(".pub").read_text().strip() if path.suffix else \
        Path(str(path) + ".pub").read_text().strip()


def _wait_listening(port: int, proc: subprocess.Popen, timeout: float = 10.0) -> None:
    until = time.monotonic() + timeout
    while time.monotonic() < until:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd on {port} exited: {proc.stderr.read()}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"sshd on {port} not listening after {timeout}s")


@dataclass
class Lab:
    dir: Path
    key: Path
    known_hosts: Path
    targets: list[SshTarget]
    host_pubkeys: dict[str, str]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("needs root (sshd)")
    _ensure_sshd()
    os.makedirs("/run/sshd", exist_ok=True)
    base = tmp_path_factory.mktemp("sshlab")
    user_key = base / "id_ed25519"
    (base / "authorized_keys").write_text(_keygen(user_key) + "\n")
    procs, targets, pubkeys, known = [], [], {}, []
    try:
        for i in range(1, 6):
            name = f"node{i:02d}"
            hdir = base / name
            hdir.mkdir()
            host_key = hdir / "host_ed25519"
            pub = _keygen(host_key)
            port = _free_port()
            cfg = hdir / "sshd_config"
            cfg.write_text("\n".join([
                f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {host_key}",
                f"PidFile {hdir}/sshd.pid", f"AuthorizedKeysFile {base}/authorized_keys",
                "StrictModes no", "UsePAM no", "PasswordAuthentication no",
                "KbdInteractiveAuthentication no", "PermitRootLogin prohibit-password",
                "AllowTcpForwarding yes", "Subsystem sftp internal-sftp", "MaxStartups 100", "LogLevel ERROR", ""]))
            proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(cfg)],
                                    stderr=subprocess.PIPE, text=True)
            procs.append(proc)
            _wait_listening(port, proc)
            key_type, key_b64 = pub.split()[:2]
            pubkeys[name] = f"{key_type} {key_b64}"
            known.append(f"[127.0.0.1]:{port} {key_type} {key_b64}")
            targets.append(SshTarget(host=name, address="127.0.0.1", user="root", port=port,
                                     key_filename=str(user_key)))
        known_hosts = base / "known_hosts"
        known_hosts.write_text("\n".join(known) + "\n")
        targets = [replace(t, known_hosts=known_hosts) for t in targets]
        yield Lab(base, user_key, known_hosts, targets, pubkeys)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(autouse=True)
def hostile_home(tmp_path, monkeypatch):
    """A ~/.ssh/config that would break every connection if it were read, and no agent."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "config").write_text(
        "Host *\n  HostName 127.0.0.2\n  Port 1\n  User nobody-here\n  ProxyCommand false\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    return home


def _policy(**kw) -> Policy:
    return Policy(**{"kind": "ssh.run", "endpoint": "ssh", "max_concurrency": 8,
                     "retry_wait": 0.05, "item_timeout": 30.0, **kw})


def _run(targets, command, **policy):
    return run_fanout(targets, lambda t: run_command(t, command, connect_timeout=CONNECT,
                                                     command_timeout=COMMAND),
                      key=lambda t: t.host, policy=_policy(**policy))


def test_command_on_five_hosts_gives_each_hosts_output(lab):
    # SSH_CONNECTION's last field is the server port: proves which sshd answered.
    report = _run(lab.targets, 'echo "${SSH_CONNECTION##* }"; echo common line')
    assert [r.status for r in report.results] == [Status.OK] * 5
    for target in lab.targets:
        result = report.by_key(target.host)
        assert result.output.splitlines() == [str(target.port), "common line"]
        assert result.exit_code == 0 and result.attempts == 1


def test_identical_outputs_are_grouped_with_folded_hosts(lab):
    bad = lab.targets[3]
    report = _run(lab.targets, f'[ "${{SSH_CONNECTION##* }}" = {bad.port} ] && '
                               'echo odd one && exit 3; echo same everywhere')
    groups = report.groups()
    assert groups[0] == (Status.OK, "same everywhere\n", ["node01", "node02", "node03", "node05"])
    assert fold_hosts(groups[0][2]) == "node[01-03,05]"
    assert groups[1][0] is Status.FAILED and groups[1][2] == ["node04"]
    assert report.by_key("node04").exit_code == 3
    assert report.by_key("node04").attempts == 1      # a non-zero exit is not retried


def test_wrong_pinned_host_key_fails_only_that_host(lab, tmp_path):
    other = _keygen(tmp_path / "other_host_key")
    victim = lab.targets[2]
    lines = lab.known_hosts.read_text().splitlines()
    lines = [(f"[127.0.0.1]:{victim.port} " + " ".join(other.split()[:2]))
             if line.startswith(f"[127.0.0.1]:{victim.port} ") else line for line in lines]
    wrong = tmp_path / "known_hosts"
    wrong.write_text("\n".join(lines) + "\n")
    targets = [replace(t, known_hosts=wrong) for t in lab.targets]
    report = _run(targets, "echo ok")
    failed = report.by_key(victim.host)
    assert failed.status is Status.FAILED
    assert "host key mismatch" in failed.error and failed.attempts == 1
    assert [r.key for r in report.ok] == [t.host for t in targets if t is not targets[2]]


def test_host_missing_from_pinned_file_is_rejected(lab, tmp_path):
    only_first = tmp_path / "known_hosts"
    only_first.write_text(lab.known_hosts.read_text().splitlines()[0] + "\n")
    target = replace(lab.targets[1], known_hosts=only_first)
    with pytest.raises(TransportError) as info:
        run_command(target, "true", connect_timeout=CONNECT, command_timeout=COMMAND)
    assert not info.value.transient and "not in the pinned known_hosts" in info.value.reason


def test_pinned_key_may_be_written_for_the_inventory_name(lab, tmp_path):
    target = lab.targets[0]
    by_name = tmp_path / "known_hosts"
    by_name.write_text(f"[{target.host}]:{target.port} {lab.host_pubkeys[target.host]}\n")
    result = run_command(replace(target, known_hosts=by_name), "echo hi",
                         connect_timeout=CONNECT, command_timeout=COMMAND)
    assert result.stdout == "hi\n" and result.ok


def test_dead_port_is_transient_and_retried(lab, caplog):
    dead = replace(lab.targets[0], host="node99", port=_free_port())
    caplog.set_level(logging.INFO, logger="k1prov.fanout")
    report = _run(lab.targets[:2] + [dead], "echo ok", retries=2)
    result = report.by_key("node99")
    assert result.status is Status.FAILED
    assert result.error == "node99: connection refused"
    assert result.attempts == 3
    retries_logged = [r for r in caplog.records if "node99: transient failure" in r.getMessage()]
    assert len(retries_logged) == 2
    assert [r.status for r in report.results[:2]] == [Status.OK, Status.OK]


def test_wrong_user_key_is_an_authentication_failure(lab, tmp_path):
    stranger = tmp_path / "stranger"
    _keygen(stranger)
    with pytest.raises(TransportError) as info:
        run_command(replace(lab.targets[0], key_filename=str(stranger)), "true",
                    connect_timeout=CONNECT, command_timeout=COMMAND)
    assert not info.value.transient and "authentication failed" in info.value.reason


def test_command_timeout_is_reported(lab):
    started = time.monotonic()
    with pytest.raises(TransportError) as info:
        run_command(lab.targets[0], "sleep 30", connect_timeout=CONNECT, command_timeout=0.5)
    assert "command timed out after 0.5s" in info.value.reason and not info.value.transient
    assert time.monotonic() - started < 15


def test_put_and_run_uses_a_private_directory_and_removes_it(lab):
    script = "#!/bin/sh\nd=$(dirname \"$0\")\nstat -c '%a %n' \"$d\" \"$0\"\necho from script >&2\nexit 4\n"
    result = put_and_run(lab.targets[1], script, remote_dir_prefix=str(lab.dir / "push."),
                         sudo=True, connect_timeout=CONNECT, command_timeout=COMMAND)
    dir_line, script_line = result.stdout.splitlines()
    mode, remote_dir = dir_line.split()
    assert mode == "700" and remote_dir.startswith(str(lab.dir / "push."))
    assert script_line.split()[0] == "700"
    assert result.exit_code == 4 and result.stderr == "from script\n"
    # sshd runs on this machine: the pushed directory must be gone.
    assert not os.path.exists(remote_dir)


def test_gateway_jump_host(lab):
    jump, target = lab.targets[0], lab.targets[4]
    via = replace(target, gateway=f"root@127.0.0.1:{jump.port}")
    result = run_command(via, 'echo "${SSH_CONNECTION##* }"', connect_timeout=CONNECT,
                         command_timeout=COMMAND)
    assert result.stdout.strip() == str(target.port)


def test_unpinned_host_key_is_accepted_with_a_warning(lab, caplog):
    caplog.set_level(logging.WARNING, logger="k1prov.ssh")
    result = run_command(replace(lab.targets[0], known_hosts=None), "echo yes",
                         connect_timeout=CONNECT, command_timeout=COMMAND)
    assert result.stdout == "yes\n"
    assert any("host key not pinned" in r.getMessage() for r in caplog.records)


def test_fanout_to_many_connections_through_the_engine(lab):
    # 60 items over 5 sshds: the engine's bound and the climber must keep sshd happy.
    targets = [replace(t, host=f"{t.host}-{i:02d}") for i in range(12) for t in lab.targets]
    report = _run(targets, "echo fine", max_concurrency=16, retries=3)
    assert [r.status for r in report.results] == [Status.OK] * len(targets)
    assert report.groups()[0][1] == "fine\n"


def test_put_and_run_is_one_ssh_session_and_delivers_a_large_script_intact(lab, monkeypatch):
    # 300 KB of comments after a line that hashes the script itself: proves the whole
    # text arrived (and that stdin was closed, or `cat` would never return).
    body = "#!/bin/bash\nsha256sum \"$0\" | cut -d' ' -f1\n" + "".join(
        f"# filler line {i:06d} {'x' * 40}\n" for i in range(6000))
    opened = []
    real_open = paramiko.Transport.open_session

    def counting_open(self, *args, **kwargs):
        opened.append(1)
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(paramiko.Transport, "open_session", counting_open)
    started = time.monotonic()
    result = put_and_run(lab.targets[0], body, connect_timeout=CONNECT, command_timeout=COMMAND)
    elapsed = time.monotonic() - started
    assert result.ok, result.stderr
    assert result.stdout.strip() == hashlib.sha256(body.encode()).hexdigest()
    assert len(opened) == 1
    assert elapsed < 5, f"pushing {len(body)} bytes took {elapsed:.1f} s"


def test_put_and_run_script_keeps_the_sessions_umask(lab):
    # The wrapper's private copy must not leak a umask 077 into what the script creates.
    plain = run_command(lab.targets[2], "umask", connect_timeout=CONNECT, command_timeout=COMMAND)
    pushed = put_and_run(lab.targets[2], "#!/bin/sh\numask\n", connect_timeout=CONNECT,
                         command_timeout=COMMAND)
    assert plain.stdout.strip() == "0022"      # sshd's default for root
    assert pushed.stdout == plain.stdout


def test_put_and_run_gives_the_script_an_empty_stdin(lab):
    # A script that reads stdin must see EOF at once, not the rest of the push or a hang.
    result = put_and_run(lab.targets[2], "#!/bin/sh\nprintf 'read:%s\\n' \"$(cat)\"\n",
                         connect_timeout=CONNECT, command_timeout=COMMAND)
    assert result.stdout == "read:\n" and result.ok


def test_put_and_run_reports_a_directory_it_cannot_create(lab):
    with pytest.raises(TransportError) as info:
        put_and_run(lab.targets[0], "#!/bin/sh\necho never\n",
                    remote_dir_prefix=str(lab.dir / "no-such-dir" / "push."),
                    connect_timeout=CONNECT, command_timeout=COMMAND)
    assert info.value.reason.startswith("cannot create a remote temporary directory: mktemp")
    assert not info.value.transient


def test_put_and_run_script_exit_125_is_the_scripts_own(lab):
    # The wrapper's failure code is 125 too; only its marker line makes it an error.
    result = put_and_run(lab.targets[0], "#!/bin/sh\necho mine >&2\nexit 125\n",
                         connect_timeout=CONNECT, command_timeout=COMMAND)
    assert result.exit_code == 125 and result.stderr == "mine\n"


def test_put_and_run_timeout_is_reported_and_the_directory_still_goes(lab):
    prefix = lab.dir / "slow."
    started = time.monotonic()
    with pytest.raises(TransportError) as info:
        put_and_run(lab.targets[3], "#!/bin/sh\nsleep 2\n", remote_dir_prefix=str(prefix),
                    connect_timeout=CONNECT, command_timeout=0.5)
    assert "command timed out after 0.5s" in info.value.reason
    assert time.monotonic() - started < 15
    # The script outlives the session; the wrapper removes its directory when it ends.
    until = time.monotonic() + 10
    while list(lab.dir.glob("slow.*")) and time.monotonic() < until:
        time.sleep(0.2)
    assert not list(lab.dir.glob("slow.*"))


def _ancestors(pid: int) -> list[int]:
    chain = []
    while pid > 1:
        stat = Path(f"/proc/{pid}/stat").read_text()
        pid = int(stat.rsplit(")", 1)[1].split()[1])
        chain.append(pid)
    return chain


def _comm(pid: int) -> str:
    return Path(f"/proc/{pid}/comm").read_text().strip()


def _wait_pgrep(pattern: str, timeout: float = 15.0) -> int:
    until = time.monotonic() + timeout
    while time.monotonic() < until:
        found = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout.split()
        if found:
            return int(found[0])
        time.sleep(0.05)
    raise AssertionError(f"no process matches {pattern!r} after {timeout} s")


# A host that stops answering: the keepalives find it gone long before the command ends.
ALIVE = 3.0
SILENT_COMMAND = 120.0


def test_a_host_that_stops_answering_mid_command_is_given_up_after_the_alive_timeout(lab):
    """The sshd serving the session is frozen (SIGSTOP): the kernel still acknowledges TCP,
    but nothing answers, as from a host that lost power behind a switch. k1prov gives the
    command up after ssh_alive, not after the command timeout."""
    import threading

    listeners = {int(p.read_text()) for p in lab.dir.glob("node*/sshd.pid")}
    outcome: dict = {}

    def run() -> None:
        t0 = time.monotonic()
        try:
            run_command(lab.targets[4], "sleep 97.25", connect_timeout=CONNECT, command_timeout=SILENT_COMMAND,
                        alive_timeout=ALIVE)
        except TransportError as exc:
            outcome["error"] = exc
        outcome["took"] = time.monotonic() - t0

    worker = threading.Thread(target=run)
    worker.start()
    frozen: list[int] = []
    sleeper = None
    try:
        sleeper = _wait_pgrep("^sleep 97.25$")
        frozen = [p for p in _ancestors(sleeper) if _comm(p).startswith("sshd") and p not in listeners]
        assert frozen, [(p, _comm(p)) for p in _ancestors(sleeper)]
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)
        worker.join(timeout=SILENT_COMMAND)
        assert not worker.is_alive()
    finally:
        for pid in frozen:
            os.kill(pid, signal.SIGCONT)
        if sleeper is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(sleeper, signal.SIGKILL)
        worker.join(timeout=SILENT_COMMAND)
    error = outcome.get("error")
    assert error is not None and "stopped answering" in error.reason and not error.transient, outcome
    # Given up on for the silence, not at the command's timeout.
    assert outcome["took"] < SILENT_COMMAND / 2, outcome


def test_a_quiet_command_on_a_live_host_outlasts_the_alive_timeout(lab):
    """Silence alone is not death: the host answers the keepalives while the command
    prints nothing for longer than ssh_alive."""
    res = run_command(lab.targets[4], "sleep 4; echo done", connect_timeout=CONNECT, command_timeout=COMMAND,
                      alive_timeout=1.5)
    assert res.exit_code == 0 and res.stdout.strip() == "done"
