"""k1prov.lab.command.run: the one way lab commands run, with real subprocesses."""
from __future__ import annotations

import time

import pytest

from k1prov.errors import LabError
from k1prov.lab.command import ERROR_TAIL_LINES, run


def test_stdout_and_stdin():
    assert run(["cat"], deadline=time.monotonic() + 5, stdin="hello\n") == "hello\n"


def test_deadline_stops_a_hanging_command():
    t0 = time.monotonic()
    with pytest.raises(LabError, match="timed out in: sleep 10"):
        run(["sleep", "10"], deadline=time.monotonic() + 0.3)
    assert time.monotonic() - t0 < 5


def test_a_passed_deadline_runs_nothing(tmp_path):
    marker = tmp_path / "ran"
    with pytest.raises(LabError, match="timed out before: mount"):
        run(["touch", str(marker)], deadline=time.monotonic() - 1, what="mount")
    assert not marker.exists()


def test_missing_program_names_the_package():
    with pytest.raises(LabError, match=r"needs k1p-no-such-tool \(apt-get install iproute2\)"):
        run(["k1p-no-such-tool"], deadline=time.monotonic() + 5, needs="iproute2")


def test_failure_keeps_the_tail_of_the_output():
    with pytest.raises(LabError) as err:
        run(["sh", "-c", "for i in $(seq 1 40); do echo line$i >&2; done; exit 3"],
            deadline=time.monotonic() + 5, what="noisy")
    text = str(err.value)
    assert text.startswith("noisy exited 3: ")
    assert "line40" in text and f"line{40 - ERROR_TAIL_LINES}\n" not in text
