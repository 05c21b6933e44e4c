"""Fan-out per partition (Ironic's conductor group or shard): one lane per key, each with its
own climber and failure budget, run by one engine. Real threads and real waits; no timed
assertion: a lane that held another back would make a gate below time out (a failure),
never a slow pass.
"""
from __future__ import annotations

import dataclasses
import threading
import time

from k1prov.context import VerbContext
from k1prov.errors import NodeError
from k1prov.fanout import Policy, Status, run_fanout
from k1prov.fanout.engine import BUDGET_EXHAUSTED
from k1prov.fanout.events import NullSink
from k1prov.fanout.profiles import ProfileStore
from k1prov.ironic_actions import ironic_partitions
from small_inventory import small_inventory

# Longest a gated item waits for the other lane before it gives up (a test failure).
GATE = 60.0


def _policy(**kw) -> Policy:
    base = dict(kind="unit.lanes", endpoint="http://ironic", retries=0, retry_wait=0.01,
                item_timeout=120.0, window=0.01)
    base.update(kw)
    return Policy(**base)


def test_results_in_input_order_each_item_once_with_a_summary_per_partition():
    items = [(f"n{i:02d}", "a" if i % 3 else "b") for i in range(30)]
    rep = run_fanout(items, lambda item: item[0].upper(), key=lambda item: item[0],
                     policy=_policy(), partition=lambda item: item[1])
    assert [r.key for r in rep.results] == [name for name, _ in items]
    assert all(r.status is Status.OK and r.value == r.key.upper() for r in rep.results)
    assert {name: p.items for name, p in rep.partitions.items()} == {"a": 20, "b": 10}
    assert rep.final_concurrency == sum(p.final_concurrency for p in rep.partitions.values())
    assert {p["name"]: p["items"] for p in rep.to_dict()["partitions"]} == {"a": 20, "b": 10}


def test_one_partition_is_the_engine_without_partitions(tmp_path):
    """Every item in one group (or none): no partition summary, the profile under the plain
    endpoint, as before partitions existed."""
    store = tmp_path / "profiles.json"
    policy = _policy(concurrency=3, profile_path=store)
    rep = run_fanout(range(12), lambda i: i, key=str, policy=policy, partition=lambda i: "rack1")
    plain = run_fanout(range(12), lambda i: i, key=str, policy=policy)
    assert rep.partitions == {} and "partitions" not in rep.to_dict()
    assert rep.final_concurrency == plain.final_concurrency == 3
    assert [r.key for r in rep.results] == [r.key for r in plain.results]


def test_a_slow_partition_does_not_hold_the_others_back():
    """The slow group's items come first and each holds its slot until every item of the
    fast group is done. One shared climber at level 2 would fill both slots with slow items
    and start no fast one: the slow items' gate would time out."""
    fast_done = threading.Event()
    fast_left = [20]
    lock = threading.Lock()

    def fn(item):
        name, group = item
        if group == "slow":
            if not fast_done.wait(GATE):
                raise NodeError(name, "the fast group never finished while this one was held")
            return "held"
        with lock:
            fast_left[0] -= 1
            if fast_left[0] == 0:
                fast_done.set()
        return "fast"

    items = [(f"s{i}", "slow") for i in range(6)] + [(f"f{i:02d}", "fast") for i in range(20)]
    rep = run_fanout(items, fn, key=lambda item: item[0], policy=_policy(start_concurrency=2),
                     partition=lambda item: item[1])
    assert rep.all_ok, [(r.key, r.error) for r in rep.results if r.status is not Status.OK]


def test_a_failing_partition_spends_its_own_failure_budget():
    def fn(item):
        name, group = item
        if group == "dead":
            raise NodeError(name, "conductor gone")
        return "ok"

    items = [(f"d{i:02d}", "dead") for i in range(20)] + [(f"g{i:02d}", "good") for i in range(20)]
    rep = run_fanout(items, fn, key=lambda item: item[0],
                     policy=_policy(concurrency=2, failure_budget=0.2),
                     partition=lambda item: item[1])
    by = {r.key: r for r in rep.results}
    assert all(by[f"g{i:02d}"].status is Status.OK for i in range(20))
    dead = [by[f"d{i:02d}"] for i in range(20)]
    skipped = [r for r in dead if r.status is Status.SKIPPED]
    assert skipped and all(r.status in (Status.FAILED, Status.SKIPPED) for r in dead)
    assert all(r.error == f"{BUDGET_EXHAUSTED} in dead" for r in skipped)
    assert rep.budget_exhausted
    assert rep.partitions["dead"].stop_reason == f"{BUDGET_EXHAUSTED} in dead"
    assert rep.partitions["good"].stop_reason is None


def test_congestion_in_one_partition_does_not_lower_another():
    """The busy group answers every call with a refused connection (transient: a sign of
    too many in flight), so its climber backs off below its start; the quiet group's eight
    items must all be in flight at once (a barrier of eight), which a level lowered by the
    busy group's congestion would never allow."""
    barrier = threading.Barrier(8, timeout=GATE)

    def fn(item):
        name, group = item
        if group == "busy":
            time.sleep(0.005)   # windows are at least 10 ms: let a few close
            raise ConnectionRefusedError(f"{name}: conductor busy")
        barrier.wait()
        return "ok"

    items = [(f"b{i:02d}", "busy") for i in range(80)] + [(f"q{i}", "quiet") for i in range(8)]
    rep = run_fanout(items, fn, key=lambda item: item[0], policy=_policy(start_concurrency=8, failure_budget=1.0),
                     partition=lambda item: item[1])
    by = {r.key: r for r in rep.results}
    assert all(by[f"q{i}"].status is Status.OK for i in range(8)), \
        [(k, r.error) for k, r in by.items() if k.startswith("q")]
    assert rep.partitions["busy"].final_concurrency < 8


def test_each_partition_starts_from_its_own_profile_entry(tmp_path):
    """Profiles: one entry per partition (endpoint [name]), so the next run of a slow group
    starts where that group converged, not where the fast one did."""
    store = ProfileStore(tmp_path / "profiles.json")
    store.put("unit.lanes", "http://ironic [a]", 3)
    store.put("unit.lanes", "http://ironic [b]", 7)
    store.put("unit.lanes", "http://ironic", 20)
    levels = []

    class Sink(NullSink):
        def on_concurrency(self, level):
            levels.append(level)

    items = [(f"n{i:02d}", "a" if i % 2 else "b") for i in range(20)]
    run_fanout(items, lambda item: None, key=lambda item: item[0], events=Sink(),
               policy=_policy(profile_path=store.path), partition=lambda item: item[1])
    assert levels[0] == 3 + 7


def test_ironic_lanes_are_shards_else_conductor_groups(tmp_path):
    inv = small_inventory(tmp_path)
    groups = {"zk1": ("rack1", None), "zk2": ("rack1", "s9"), "zk3": (None, None),
              "master": ("rack2", None)}
    nodes = tuple(dataclasses.replace(n, conductor_group=groups.get(n.name, (None, None))[0],
                                      shard=groups.get(n.name, (None, None))[1])
                  for n in inv.nodes)
    lanes = ironic_partitions(VerbContext(dataclasses.replace(inv, nodes=nodes)))
    assert lanes == {"zk1": "conductor_group=rack1", "zk2": "shard=s9",
                     "master": "conductor_group=rack2"}
    assert lanes.get("w01", "") == ""
