"""One exit-code rule (k1prov.verb_report.exit_code) for every command's report."""
from __future__ import annotations

import pytest

from k1prov.verb_report import ClusterReport
from k1prov.fanout import Report, Result, Status
from k1prov.verb_report import (EXIT_INTERRUPTED, EXIT_NOTHING, EXIT_OK, EXIT_PARTIAL, NodeOutcome,
                            VerbReport, exit_code)
from k1prov.ad_hoc import exit_code as run_exit_code


@pytest.mark.parametrize("succeeded, failed, cancelled, code", [
    (0, 0, False, EXIT_NOTHING),      # nothing ran
    (0, 3, False, EXIT_NOTHING),      # every item failed
    (2, 1, False, EXIT_PARTIAL),
    (3, 0, False, EXIT_OK),
    (3, 0, True, EXIT_INTERRUPTED),
    (0, 0, True, EXIT_INTERRUPTED),
])
def test_the_rule(succeeded, failed, cancelled, code):
    assert exit_code(succeeded=succeeded, failed=failed, cancelled=cancelled) == code


def _reports(statuses: list[Status]):
    """The same outcomes as a verb report, a run report and a cluster report."""
    verb = VerbReport(verb="v", outcomes=[NodeOutcome(node=f"n{i}", status=s) for i, s in enumerate(statuses)])
    run = Report(results=[Result(key=f"n{i}", status=s) for i, s in enumerate(statuses)],
                 kind="ssh.run", endpoint="ssh")
    cluster = ClusterReport(verb="c", rows=[{"node": f"n{i}", "error": None if s is Status.OK else "x"}
                                            for i, s in enumerate(statuses)])
    return verb.exit_code(), run_exit_code(run), cluster.exit_code()


@pytest.mark.parametrize("statuses, code", [
    ([], EXIT_NOTHING),
    ([Status.OK, Status.OK], EXIT_OK),
    ([Status.OK, Status.FAILED], EXIT_PARTIAL),
    ([Status.TIMEOUT, Status.FAILED], EXIT_NOTHING),
])
def test_every_report_follows_the_rule_even_on_an_empty_run(statuses, code):
    assert _reports(statuses) == (code, code, code)


def test_an_unhealthy_service_makes_an_all_ok_cluster_partial():
    report = ClusterReport(verb="c", rows=[{"node": "n1", "error": None}], health={"zookeeper": "unhealthy: x"})
    assert report.exit_code() == EXIT_PARTIAL


@pytest.mark.parametrize("error, code", [(28, 1), (122, 1), (30, 1), (13, None)])
def test_a_full_or_read_only_disk_under_any_write_is_one_line(error, code):
    """ENOSPC, EDQUOT, EROFS under a write no module translated: one line naming the
    file and exit 1; any other OSError (EACCES here) is a bug and keeps its traceback."""
    import os

    import typer
    from typer.testing import CliRunner

    from k1prov.cli.common import handles_errors

    app = typer.Typer()

    @app.command()
    @handles_errors
    def write():
        raise OSError(error, os.strerror(error), "/state/c1/runs/x/meta.json")

    result = CliRunner().invoke(app, [])
    if code is None:
        assert isinstance(result.exception, PermissionError)
        return
    assert result.exit_code == code
    assert result.output.strip().splitlines() == [
        f"error: cannot write /state/c1/runs/x/meta.json: {os.strerror(error)}; free space there "
        "(or make it writable) and run again"]
