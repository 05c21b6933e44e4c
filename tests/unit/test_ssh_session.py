"""The remote side of ending a command (k1prov.ssh.session_command / kill_command), run by a
local `sh` exactly as sshd would run it: the payload's output and exit code pass through, its
session is announced, and it is ended with everything it started by the kill command or by
the watchdog when the parent (sshd's session process) goes away. No network."""
from __future__ import annotations

import os
import signal
import subprocess
import time

from k1prov.ssh import kill_command, session_command

GONE_TIMEOUT = 15.0


def _pids(cmdline: str) -> list[str]:
    res = subprocess.run(["pgrep", "-fx", cmdline], capture_output=True, text=True)
    return res.stdout.split()


def _wait(predicate, what: str, timeout: float = GONE_TIMEOUT) -> None:
    until = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < until, what
        time.sleep(0.1)


def _start(payload: str, **kw) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen(["sh", "-c", session_command(payload, **kw)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = proc.stderr.readline().split()
    assert first[0] == "K1PROV-SID"
    return proc, int(first[1])


def test_output_exit_code_and_stdin_pass_through():
    proc = subprocess.run(["sh", "-c", session_command("cat; echo err >&2; exit 7")],
                          input="from stdin\n", capture_output=True, text=True, timeout=30)
    assert proc.returncode == 7
    assert proc.stdout == "from stdin\n"
    marker, _, rest = proc.stderr.partition("\n")
    assert marker.startswith("K1PROV-SID ") and rest == "err\n"


def _run_kill_command(sid, *, kill_grace: float) -> str:
    """What kill_command prints when run here ("ended" or "killed")."""
    return subprocess.run(["sh", "-c", kill_command(sid, kill_grace=kill_grace, as_root=False)],
                          capture_output=True, text=True, timeout=30).stdout.strip()


def test_kill_command_ends_the_session_and_its_children():
    proc, sid = _start("sleep 88101 & sh -c 'sleep 88102'; echo never")
    _wait(lambda: _pids("sleep 88102"), "the payload never started")
    assert _run_kill_command(sid, kill_grace=2) == "ended"
    proc.wait(10)
    assert "never" not in proc.stdout.read()
    _wait(lambda: not _pids("sleep 88101") and not _pids("sleep 88102"), "left behind")


def test_kill_command_escalates_to_sigkill():
    proc, sid = _start("trap '' TERM; sleep 88103; sleep 88103")
    _wait(lambda: _pids("sleep 88103"), "the payload never started")
    out = _run_kill_command(sid, kill_grace=0.5)
    # An ignored signal stays ignored across exec: the sleeps ignore TERM too.
    assert out == "killed"
    proc.wait(10)
    _wait(lambda: not _pids("sleep 88103"), "left behind")


def test_kill_command_on_a_finished_session_says_gone():
    proc, sid = _start("true")
    proc.wait(10)
    out = subprocess.run(["sh", "-c", kill_command(sid, kill_grace=1, as_root=False)],
                         capture_output=True, text=True, timeout=30).stdout
    assert out.strip() == "gone"


def test_the_watchdog_ends_the_command_when_its_parent_goes_away():
    """sshd's session process exits when the client vanishes (k1prov killed): here the
    parent is a shell that the test kills with SIGKILL."""
    parent = subprocess.Popen(["sh", "-c", session_command("sleep 88104", kill_grace=1) + " & wait"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    _wait(lambda: _pids("sleep 88104"), "the payload never started")
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait(10)
    _wait(lambda: not _pids("sleep 88104"), "the watchdog did not end the command")


def test_the_payload_runs_in_the_login_shell():
    """sshd runs a command with the user's shell; the wrapper keeps that ($SHELL)."""
    proc = subprocess.run(["sh", "-c", session_command("echo {1..3}")], capture_output=True,
                          text=True, timeout=30, env={**os.environ, "SHELL": "/bin/bash"})
    assert proc.stdout == "1 2 3\n"


def test_the_login_shell_reads_its_rc_file_once(tmp_path):
    """As sshd runs it: the user's bash with the channel's socket as stdin, `-c COMMAND`.
    That bash reads ~/.bashrc (stdin is a socket); the payload's shell must not read it a
    second time (it did: twice the host's CPU per command where the rc file is heavy)."""
    import socket

    (tmp_path / ".bashrc").write_text(f"echo read >> {tmp_path}/reads\n")
    env = {k: v for k, v in os.environ.items() if k not in ("SHLVL", "BASH_ENV", "ENV")}
    env.update(HOME=str(tmp_path), SHELL="/bin/bash")
    ours, theirs = socket.socketpair()
    with ours, theirs:
        ours.shutdown(socket.SHUT_WR)          # the channel's stdin ends, as k1prov's does
        proc = subprocess.run(["bash", "-c", session_command("echo payload ran")],
                              stdin=theirs, capture_output=True, text=True, timeout=30, env=env)
    assert proc.returncode == 0 and proc.stdout == "payload ran\n"
    assert (tmp_path / "reads").read_text() == "read\n"


def test_the_session_id_line_is_found_after_what_the_login_shell_wrote_first():
    """A ~/.bashrc that writes to stderr before the wrapper runs (a racing `pyenv rehash`
    was seen) must not leave the session id's line in the command's output."""
    from k1prov.ssh import _Output

    class Chan:
        def __init__(self, err: bytes):
            self.err = [err]

        def recv_ready(self):
            return False

        def recv_stderr_ready(self):
            return bool(self.err)

        def recv_stderr(self, n):
            return self.err.pop(0)

    out = _Output()
    out.drain(Chan(b"pyenv: cannot rehash: /root/.pyenv/shims isn't writable\nK1PROV-SID 4242\nreal error\n"))
    assert out.sid == 4242
    assert out.text() == ("", "pyenv: cannot rehash: /root/.pyenv/shims isn't writable\nreal error\n")
