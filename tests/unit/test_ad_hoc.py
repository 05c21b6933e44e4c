"""k1prov.ad_hoc without a network: refusals and exit codes (node selection, SSH targets
and policies are the context's: test_context.py)."""
from __future__ import annotations

import pytest

from k1prov.errors import ConfigError
from k1prov.fanout import Report, Result, Status
from k1prov.inventory import load_inventory
from k1prov.verb_report import EXIT_INTERRUPTED, EXIT_NOTHING, EXIT_OK, EXIT_PARTIAL
from k1prov.ad_hoc import exit_code, run_on_hosts
from k1prov.context import VerbContext

INVENTORY = """\
cluster: unit
cloud: {ironic_url: "http://127.0.0.1:9"}
ssh: {user: ops, private_key: /keys/id, port: 2222, gateway: "jump@10.9.0.1:22"}
defaults:
  bmc: {address: 127.0.0.1, username: admin, password: {env: UNIT_UNUSED}}
nodes:
  - name: zk[1-3]
    address: {start: 10.0.0.1}
    macs: [{start: "52:54:00:00:00:01"}]
    bmc: {port: {start: 7001}}
    roles: [zookeeper]
  - name: master
    address: 10.0.0.10
    macs: ["52:54:00:00:01:00"]
    bmc: {port: 7010}
    roles: [spark-master]
    gateway: "other@10.9.0.2:2200"
  - name: w[01-04]
    address: {start: 10.0.0.21}
    macs: [{start: "52:54:00:00:02:01"}]
    bmc: {port: {start: 7021}}
    roles: [spark-worker]
"""


@pytest.fixture
def inv(tmp_path):
    path = tmp_path / "inv.yaml"
    path.write_text(INVENTORY)
    return load_inventory(path)


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
