"""k1prov.ad_hoc without a network: refusals and exit codes (node selection, SSH targets
and policies are the context's: test_context.py)."""
from __future__ import annotations

import pytest

from k1prov.errors import ConfigError
from k1prov.fanout import Report, Result, Status
from k1prov.verb_report import EXIT_INTERRUPTED, EXIT_NOTHING, EXIT_OK, EXIT_PARTIAL
from k1prov.ad_hoc import exit_code, run_on_hosts
from k1prov.context import VerbContext
from small_inventory import small_inventory



@pytest.fixture
def inv(tmp_path):
    return small_inventory(tmp_path)


def test_empty_command_is_refused_before_any_connection(inv):
    with pytest.raises(ConfigError):
        run_on_hosts(VerbContext(inv), "  ", nodes=list(inv.nodes))


def report(*statuses: Status, cancelled: bool = False) -> Report:
    return Report(results=[Result(f"h{i}", s) for i, s in enumerate(statuses)], cancelled=cancelled)


@pytest.mark.parametrize("statuses, code", [
    ((Status.OK, Status.OK), EXIT_OK),
    ((Status.OK, Status.FAILED), EXIT_PARTIAL),
    ((Status.OK, Status.TIMEOUT, Status.SKIPPED), EXIT_PARTIAL),
    ((Status.FAILED, Status.TIMEOUT), EXIT_NOTHING),
    ((Status.FAILED, Status.SKIPPED), EXIT_NOTHING),
    ((), EXIT_NOTHING),
])
def test_exit_code(statuses, code):
    assert exit_code(report(*statuses)) == code


def test_cancelled_run_is_interrupted_whatever_finished():
    assert exit_code(report(Status.OK, Status.SKIPPED, cancelled=True)) == EXIT_INTERRUPTED


def test_unpinned_run_warns_once_and_keeps_the_per_host_warnings_for_verbose(inv, tmp_path, monkeypatch,
                                                                            caplog):
    """Without pinned host keys the run says so once (ctx.warn, printed even with --json)
    and the SSH layer's warning per host is held back unless -v; with pinned keys,
    neither."""
    import logging

    import k1prov.ad_hoc as ad_hoc
    from k1prov.ssh import CommandResult

    def run_command(target, command, **kw):
        logging.getLogger("k1prov.ssh").warning("%s: host key not pinned", target.host)
        return CommandResult(target.host, 0, "ok\n", "")

    monkeypatch.setattr(ad_hoc, "run_command", run_command)
    warnings: list[str] = []
    ctx = VerbContext(inv, state_root=tmp_path / "state", warn=warnings.append)
    caplog.set_level(logging.WARNING)
    result = ad_hoc.run(ctx, "true")
    assert result.exit_code() == EXIT_OK and len(result.report.results) == len(inv.nodes)
    assert len(warnings) == 1 and "no pinned host keys" in warnings[0]
    assert not [r for r in caplog.records if r.name == "k1prov.ssh"]
    assert logging.getLogger("k1prov.ssh").level == logging.NOTSET     # put back after the run
    pinned = tmp_path / "known_hosts"
    pinned.write_text("")
    caplog.clear()
    assert ad_hoc.run(ctx, "true", known_hosts=pinned).exit_code() == EXIT_OK
    assert len(warnings) == 1
    assert len([r for r in caplog.records if r.name == "k1prov.ssh"]) == len(inv.nodes)
