"""The engine against real subprocesses and real (sub-second) timeouts."""
from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
import time
import warnings
from dataclasses import dataclass

from openstack import exceptions as os_exc

from k1prov import settings
from k1prov.errors import NodeError, TransportError
from k1prov.fanout import Policy, Status, run_fanout
from k1prov.fanout.engine import (BUDGET_EXHAUSTED, CANCELLED, CANCELLED_IN_FLIGHT,
                                  DEADLINE_REACHED, default_is_transient)
from k1prov.fanout.events import NullSink
from k1prov.fanout.profiles import ProfileStore


@dataclass
class Cmd:
    """A command result with the invoke/Fabric protocol (stdout, stderr, exited, ok)."""
    stdout: str
    stderr: str
    exited: int

    @property
    def ok(self) -> bool:
        return self.exited == 0


def sh(script: str, timeout: float = 20.0) -> Cmd:
    proc = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=timeout)
    return Cmd(proc.stdout, proc.stderr, proc.returncode)


class InFlight:
    """Counts calls running at once (the truth the engine's bound must respect)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.now = self.max = 0

    def __enter__(self):
        with self.lock:
            self.now += 1
            self.max = max(self.max, self.now)
            return self.now

    def __exit__(self, *exc):
        with self.lock:
            self.now -= 1


def http_error(status: int) -> os_exc.HttpException:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")      # http_status= is deprecated but still honoured
        return os_exc.HttpException(message="conductor busy", http_status=status)


def policy(**kw) -> Policy:
    return Policy(**{"kind": "test", "retry_wait": 0.01, "window": 0.05, **kw})


def test_fixed_concurrency_bound_is_respected_and_reached():
    counter = InFlight()

    def fn(i):
        with counter:
            return sh("sleep 0.05; echo done")

    report = run_fanout(range(24), fn, key=str, policy=policy(concurrency=3))
    assert counter.max == 3
    assert [r.status for r in report.results] == [Status.OK] * 24
    assert {level for _, level, _ in report.trace} == {3}


def test_a_fixed_level_above_the_adaptive_ceiling_is_honoured():
    # `--concurrency 32` against Ironic (adaptive ceiling 24) means 32: the operator asked.
    counter = InFlight()
    all_in = threading.Event()

    def fn(i):
        # Each call holds its slot until 32 run at once (bounded): a fixed sleep let a loaded
        # machine finish early calls before the last of the 32 had started.
        with counter as now:
            if now >= 32:
                all_in.set()
            all_in.wait(timeout=10)

    report = run_fanout(range(64), fn, key=str, policy=policy(concurrency=32, max_concurrency=24))
    assert counter.max == 32 and report.final_concurrency == 32
    # The hard ceiling still holds.
    capped = run_fanout(range(4), fn, key=str,
                        policy=policy(concurrency=settings.MAX_CONCURRENCY + 100))
    assert capped.final_concurrency == settings.MAX_CONCURRENCY


def test_adaptive_level_never_exceeds_max_concurrency():
    counter = InFlight()
    levels = []

    class Sink(NullSink):
        def on_concurrency(self, level):
            levels.append(level)

    def fn(i):
        with counter:
            time.sleep(0.01)

    report = run_fanout(range(300), fn, key=str, policy=policy(max_concurrency=5), events=Sink())
    assert counter.max <= 5
    assert max(levels) <= 5 and levels[0] == 4
    assert len(report.ok) == 300


def test_results_in_input_order_with_outputs_and_exit_codes():
    report = run_fanout(["a", "b", "c"], lambda s: sh(f"echo out-{s}; echo err-{s} >&2; "
                                                      f"[ {s} = b ] && exit 3; exit 0"),
                        key=lambda s: f"host-{s}", policy=policy())
    assert [r.key for r in report.results] == ["host-a", "host-b", "host-c"]
    a, b = report.by_key("host-a"), report.by_key("host-b")
    assert a.status is Status.OK and a.output == "out-a\nerr-a\n" and a.exit_code == 0
    assert b.status is Status.FAILED and b.exit_code == 3 and b.error == "exit code 3: err-b"
    assert b.attempts == 1                   # a non-zero exit is an answer, not retried
    assert a.value is None                   # the full command object is not kept


def test_transient_failures_are_retried_and_logged(caplog):
    caplog.set_level(logging.INFO, logger="k1prov.fanout")
    calls = {}
    lock = threading.Lock()

    def fn(name):
        with lock:
            calls[name] = calls.get(name, 0) + 1
            n = calls[name]
        if name == "flaky" and n < 3:
            raise ConnectionResetError("reset by peer")
        if name == "dead":
            raise TransportError("dead", "connection refused", transient=True)
        if name == "auth":
            raise TransportError("auth", "authentication failed")
        if name == "busy" and n < 2:
            raise http_error(503)
        return sh(f"echo {name}")

    report = run_fanout(["flaky", "dead", "auth", "busy", "fine"], fn, key=str,
                        policy=policy(retries=2))
    assert (report.by_key("flaky").status, report.by_key("flaky").attempts) == (Status.OK, 3)
    dead = report.by_key("dead")
    assert (dead.status, dead.attempts, dead.error) == (Status.FAILED, 3,
                                                        "dead: connection refused")
    assert (report.by_key("auth").attempts, report.by_key("auth").error) == \
        (1, "auth: authentication failed")
    assert (report.by_key("busy").status, report.by_key("busy").attempts) == (Status.OK, 2)
    assert report.by_key("fine").attempts == 1
    logged = [r.getMessage() for r in caplog.records if "transient failure" in r.getMessage()]
    assert sum("flaky" in m for m in logged) == 2 and sum("dead" in m for m in logged) == 2


def test_default_transient_classification():
    assert default_is_transient(ConnectionRefusedError())
    assert default_is_transient(TimeoutError())
    assert default_is_transient(TransportError("h", "reset", transient=True))
    assert not default_is_transient(TransportError("h", "host key mismatch"))
    assert default_is_transient(http_error(504))
    assert not default_is_transient(http_error(409))
    assert not default_is_transient(ValueError("x"))


def test_errors_are_one_line_and_k1prov_messages_unchanged():
    def fn(i):
        if i == 0:
            raise RuntimeError("first line\nsecond line\nthird")
        if i == 1:
            raise NodeError("node7", "deploy failed")
        raise KeyError()

    report = run_fanout([0, 1, 2], fn, key=str, policy=policy(failure_budget=1.0))
    assert [r.error for r in report.results] == ["first line", "node7: deploy failed", "KeyError"]


def test_failure_budget_stops_new_work():
    started = []

    def fn(i):
        started.append(i)
        return sh("exit 1")

    report = run_fanout(range(40), fn, key=str, policy=policy(concurrency=2, failure_budget=0.25))
    assert report.budget_exhausted
    failed = report.failed
    # More than 25% of 40 = 11 failures stop it; at most the in-flight ones finish after.
    assert 11 <= len(failed) <= 11 + 2
    assert len(started) == len(failed)
    assert {r.error for r in report.skipped} == {BUDGET_EXHAUSTED}
    assert len(report.skipped) == 40 - len(failed)


def test_per_item_timeout_frees_the_slot():
    procs = []
    lock = threading.Lock()

    def fn(i):
        proc = subprocess.Popen(["sleep", "10" if i < 2 else "0.02"])
        with lock:
            procs.append(proc)
        proc.wait()
        return proc.returncode

    t0 = time.monotonic()
    try:
        report = run_fanout(range(8), fn, key=str,
                            policy=policy(concurrency=2, item_timeout=0.4, failure_budget=1.0))
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
    elapsed = time.monotonic() - t0
    assert [r.status for r in report.results[:2]] == [Status.TIMEOUT] * 2
    assert report.results[0].error == "timed out after 0.4s"
    assert all(r.status is Status.OK and r.value == 0 for r in report.results[2:])
    assert elapsed < 5          # both slots were freed at the timeout, not after 10 s


def test_run_deadline():
    procs, lock = [], threading.Lock()

    def fn(i):
        proc = subprocess.Popen(["sleep", "0.25" if i < 2 else "10"])
        with lock:
            procs.append(proc)
        proc.wait()

    t0 = time.monotonic()
    try:
        report = run_fanout(range(10), fn, key=str,
                            policy=policy(concurrency=2, deadline=0.8, failure_budget=1.0))
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
    assert time.monotonic() - t0 < 4
    assert report.deadline_hit
    assert [r.status for r in report.results[:2]] == [Status.OK, Status.OK]
    assert [r.status for r in report.results[2:4]] == [Status.TIMEOUT] * 2
    assert {r.error for r in report.results[2:4]} == {DEADLINE_REACHED}
    assert all(r.status is Status.SKIPPED and r.error == DEADLINE_REACHED
               for r in report.results[4:])


def test_ctrl_c_from_an_event_hook_returns_a_report():
    class Interrupting(NullSink):
        def __init__(self):
            self.done = 0
            self.finished = None

        def on_item_done(self, result):
            self.done += 1
            if self.done == 3:
                raise KeyboardInterrupt

        def on_finish(self, report):
            self.finished = report

    sink = Interrupting()
    report = run_fanout(range(30), lambda i: sh("sleep 0.05; echo x"), key=str,
                        policy=policy(concurrency=3), events=sink)
    assert report.cancelled and sink.finished is report
    ok = report.ok
    # The 3 done plus the ones in flight at the interrupt, which were allowed to finish.
    assert 3 <= len(ok) <= 6
    assert all(r.status is Status.SKIPPED and r.error == CANCELLED for r in report.skipped)
    assert len(ok) + len(report.skipped) == 30


def test_sigint_to_the_main_thread_with_a_hanging_item():
    # A test run started in the background inherits SIGINT ignored (bash does that to
    # background jobs): give this test Python's own handler, as an interactive shell would.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    main = threading.main_thread().ident
    procs, lock = [], threading.Lock()

    def fn(i):
        if i == 4:
            signal.pthread_kill(main, signal.SIGINT)
        proc = subprocess.Popen(["sleep", "10" if i == 0 else "0.02"])
        with lock:
            procs.append(proc)
        proc.wait()

    t0 = time.monotonic()
    try:
        report = run_fanout(range(50), fn, key=str,
                            policy=policy(concurrency=2, cancel_grace=0.3))
    finally:
        signal.signal(signal.SIGINT, previous)
        for proc in procs:
            proc.kill()
            proc.wait()
    assert report.cancelled
    assert time.monotonic() - t0 < 5
    assert report.results[0].status is Status.SKIPPED
    assert report.results[0].error == CANCELLED_IN_FLIGHT
    assert report.results[-1].error == CANCELLED
    assert len(report.ok) >= 3


def test_grouping_of_identical_outputs():
    def fn(i):
        return sh("echo kernel 6.1" if i % 5 else "echo kernel 5.10; exit 1")

    report = run_fanout(range(1, 11), fn, key=lambda i: f"worker{i:03d}",
                        policy=policy(failure_budget=1.0))
    groups = report.groups()
    assert groups[0] == (Status.OK, "kernel 6.1\n",
                         [f"worker{i:03d}" for i in (1, 2, 3, 4, 6, 7, 8, 9)])
    assert groups[1] == (Status.FAILED, "kernel 5.10\n", ["worker005", "worker010"])
    data = report.to_dict()
    assert data["counts"] == {"ok": 8, "failed": 2, "timeout": 0, "skipped": 0}
    assert data["results"][4]["exit_code"] == 1


def test_outputs_are_bounded_and_threads_reused():
    threads_seen = InFlight()
    names = set()
    lock = threading.Lock()

    def fn(i):
        with lock:
            names.add(threading.current_thread().name)
        with threads_seen:
            # 200 KB of output per item, the tail ends with the item number.
            return sh(f"head -c 200000 /dev/zero | tr '\\0' x; echo; echo end-{i}")

    report = run_fanout(range(150), fn, key=str, policy=policy(max_concurrency=8))
    assert all(len(r.output) <= 2048 and r.output.endswith(f"end-{r.key}\n")
               for r in report.results)
    assert all(r.value is None for r in report.results)
    assert len(names) <= 8 and threads_seen.max <= 8


def test_a_thousand_items_with_few_threads():
    names, lock = set(), threading.Lock()

    def fn(i):
        with lock:
            names.add(threading.current_thread().name)
        return i * 2

    before = threading.active_count()
    report = run_fanout(range(1500), fn, key=str, policy=policy(max_concurrency=16))
    assert [r.value for r in report.results] == [i * 2 for i in range(1500)]
    assert len(names) <= 16
    time.sleep(0.1)
    assert threading.active_count() <= before + 1     # idle workers exit after the run


def test_engine_settles_near_the_real_capacity(tmp_path):
    """fn gets slow when more than K calls run at once; the engine must settle near K."""
    K = 6
    counter = InFlight()

    def fn(i):
        with counter as now:
            time.sleep(0.02 if now <= K else 0.02 * (now / K) ** 2)

    profile = tmp_path / "profiles.json"
    report = run_fanout(range(1200), fn, key=str,
                        policy=policy(max_concurrency=64, profile_path=profile, window=0.15))
    assert len(report.ok) == 1200
    learned = ProfileStore(profile).get("test", "")
    assert learned is not None and K - 2 <= learned <= K + 2, report.trace
    late = [level for _, level, _ in report.trace[len(report.trace) // 2:]]
    assert sum(K - 2 <= lv <= K + 2 for lv in late) >= 0.7 * len(late), report.trace

    # The next run starts from the remembered level instead of climbing from 4.
    levels = []

    class Sink(NullSink):
        def on_concurrency(self, level):
            levels.append(level)

    run_fanout(range(50), fn, key=str, policy=policy(profile_path=profile), events=Sink())
    assert levels[0] == learned


def test_explicit_start_overrides_the_profile(tmp_path):
    profile = tmp_path / "p.json"
    ProfileStore(profile).put("test", "", 20)
    levels = []

    class Sink(NullSink):
        def on_concurrency(self, level):
            levels.append(level)

    run_fanout(range(5), lambda i: i, key=str,
               policy=policy(profile_path=profile, start_concurrency=2), events=Sink())
    assert levels[0] == 2


def test_open_file_limit_is_raised_or_caps_the_ceiling():
    code = (
        "import resource\n"
        "from k1prov.fanout.engine import effective_ceiling\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (100, hard))\n"
        "print(effective_ceiling(64), resource.getrlimit(resource.RLIMIT_NOFILE)[0] == hard)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (100, 100))\n"
        "print(effective_ceiling(64))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout.split()
    assert out[0] == "64" and out[1] == "True"
    assert out[2] == str((100 - 64) // 4)


def test_empty_input():
    report = run_fanout([], lambda i: i, key=str, policy=policy())
    assert report.results == [] and not report.cancelled


def test_level_path_lists_each_level_change_once():
    from k1prov.fanout.results import level_path
    trace = [(0.5, 4, 3.0), (1.0, 4, 3.5), (1.6, 8, 7.0), (2.0, 6, 6.0), (2.4, 6, 6.1), (3.0, 8, 7.2)]
    assert level_path(trace) == "4>8>6>8"
    assert level_path([]) == ""


# ---- giving up on an item: its cancel token (k1prov.fanout.cancel) -------------------------

def _watching(reports: dict, tail: str):
    """An fn that holds 'remote work' until the engine gives up, then reports how it ended."""
    from k1prov.fanout import current_cancel

    def fn(i):
        token = current_cancel()
        assert token is not None
        if not token.wait(10):
            return "finished"
        reports[i] = token.reason
        raise TransportError(f"h{i}", f"{token.reason}; {tail}")
    return fn


def test_an_item_past_its_timeout_is_asked_to_stop_and_its_account_is_kept():
    reports: dict = {}
    report = run_fanout(range(2), _watching(reports, "ended on the host"), key=str,
                        policy=policy(item_timeout=0.3, cancel_wait=5.0, retries=0))
    assert reports == {0: "timed out after 0.3s", 1: "timed out after 0.3s"}
    assert [r.status for r in report.results] == [Status.TIMEOUT] * 2
    assert all(r.error == f"h{r.key}: timed out after 0.3s; ended on the host" for r in report.results)


def test_the_run_deadline_asks_running_items_to_stop():
    reports: dict = {}
    report = run_fanout(range(3), _watching(reports, "ended"), key=str,
                        policy=policy(concurrency=2, deadline=0.3, cancel_wait=5.0, retries=0))
    assert set(reports.values()) == {DEADLINE_REACHED}
    assert [r.status for r in report.results[:2]] == [Status.TIMEOUT] * 2
    assert report.results[0].error.endswith(f"{DEADLINE_REACHED}; ended")
    assert report.results[2].status is Status.SKIPPED and report.deadline_hit


def test_without_cancel_wait_the_timeout_is_recorded_at_once_and_the_token_still_set():
    seen = threading.Event()
    from k1prov.fanout import current_cancel

    def fn(i):
        if current_cancel().wait(10):
            seen.set()
        return "late"

    started = time.monotonic()
    report = run_fanout([0], fn, key=str, policy=policy(item_timeout=0.2, retries=0))
    assert report.results[0].status is Status.TIMEOUT
    assert report.results[0].error == "timed out after 0.2s"
    assert time.monotonic() - started < 5
    assert seen.wait(5)


def test_ctrl_c_asks_running_items_to_stop():
    class Interrupting(NullSink):
        def on_item_start(self, key):
            if key == "1":
                raise KeyboardInterrupt

    reports: dict = {}
    report = run_fanout(range(4), _watching(reports, "ended on the host"), key=str,
                        policy=policy(concurrency=2, cancel_grace=5.0, retries=0),
                        events=Interrupting())
    assert report.cancelled
    # Items 0 and 1 were running (the hook runs after an item starts), 2 and 3 never started.
    assert reports == {0: "interrupted", 1: "interrupted"}
    assert [r.status for r in report.results] == [Status.FAILED] * 2 + [Status.SKIPPED] * 2
    assert report.results[1].error == "h1: interrupted; ended on the host"


def test_current_cancel_is_none_outside_the_engine():
    from k1prov.fanout import current_cancel
    assert current_cancel() is None


def test_a_timeout_names_the_transient_failure_the_item_was_waiting_out():
    def busy(item):
        raise TransportError("h1", "host busy, try later", transient=True)

    report = run_fanout([1], busy, key=str,
                        policy=Policy(kind="t", item_timeout=0.6, retries=50, retry_wait=0.2))
    (result,) = report.results
    assert result.status is Status.TIMEOUT
    assert result.error == "timed out after 0.6s (last try: h1: host busy, try later)"
