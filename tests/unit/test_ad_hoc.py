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
