"""k1prov.deploy_logs and the inventory's cloud.deploy_logs (no network)."""
from __future__ import annotations

import os
from pathlib import Path

from k1prov.deploy_logs import keep, newest_logs
from k1prov.inventory.loader import parse_inventory


def test_newest_log_per_node_by_ironics_file_names(tmp_path):
    a, b = "11111111-aaaa", "22222222-bbbb"
    old = tmp_path / f"{a}_n1_2026-11-30-10-00-00.tar.gz"
    new = tmp_path / f"{a}_n1_2026-11-30-11-00-00.tar.gz"
    other = tmp_path / f"{b}_n2_2026-11-30-10-00-00.tar.gz"
    for i, p in enumerate((old, new, other)):
        p.write_bytes(b"x")
        os.utime(p, (1000 + i, 1000 + i))
    (tmp_path / f"{a}_notes.txt").write_text("not a log")
    assert newest_logs(tmp_path, [a, b, "3333"]) == {a: new, b: other}
    assert newest_logs(None, [a]) == {} and newest_logs(tmp_path / "missing", [a]) == {}
    (tmp_path / "run").mkdir()
    copy = keep(new, tmp_path / "run")
    assert copy.read_bytes() == b"x" and copy.name == f"agent-deploy-{new.name}"


def test_inventory_cloud_deploy_logs_is_a_local_path(tmp_path):
    inv = parse_inventory(
        "cluster: c\ncloud: {ironic_url: 'http://10.0.0.1:6385', deploy_logs: logs/deploy}\n"
        "nodes:\n  - name: n1\n    bmc: {address: 10.0.1.1, username: u, password: {env: X}}\n"
        "    macs: ['52:54:00:00:00:01']\n    address: 10.0.0.11\n",
        path=tmp_path / "inv.yaml")
    assert Path(inv.cloud.deploy_logs) == tmp_path / "logs" / "deploy"
