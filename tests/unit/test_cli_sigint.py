"""SIGINT stops k1prov even when it was started with SIGINT ignored (the background of a
script without job control: `k1prov deploy &`), as Ctrl-C does in a terminal: the command
ends with "interrupted" and exit code 130. A real k1prov process, a real signal, an
"Ironic" that accepts the connection and never answers (so the command is waiting on it)."""
from __future__ import annotations

import signal
import socket
import subprocess
import sys

from k1prov.verb_report import EXIT_INTERRUPTED

# Longest the test waits for the command to end (a failure, not a measure): without the
# fix it ends only when its API request times out (60 s) with another exit code.
END_TIMEOUT = 300


def test_sigint_ends_a_k1prov_started_with_sigint_ignored(tmp_path):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    port = server.getsockname()[1]
    inv = tmp_path / "inv.yaml"
    inv.write_text(f"""\
cluster: sigint
cloud: {{ironic_url: "http://127.0.0.1:{port}"}}
ssh: {{user: ops, private_key: /keys/id}}
defaults:
  bmc: {{address: 127.0.0.1, username: admin, password: {{env: UNIT_UNUSED}}}}
nodes:
  - name: n1
    address: 10.0.0.1
    macs: ["52:54:00:00:00:01"]
    bmc: {{port: 7001}}
""")
    proc = subprocess.Popen(
        [sys.executable, "-c", "from k1prov.cli import main; main()", "nodes", "list", "-i", str(inv)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        server.settimeout(END_TIMEOUT)
        held, _ = server.accept()       # k1prov is running and waiting for Ironic's answer
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=END_TIMEOUT)
        held.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        server.close()
    assert proc.returncode == EXIT_INTERRUPTED, err[-2000:]
    assert "interrupted" in err
