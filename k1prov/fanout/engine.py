"""The fan-out engine: items + a callable -> one Result per item, never an exception.

Transport-agnostic (the same engine runs Ironic calls and SSH commands). One thread,
the caller's, owns all bookkeeping: it starts items while fewer than the climber's level
are in flight, takes completions from a queue, expires items past their deadline and
calls the event sink. Worker threads only run fn (with bounded retries) and report back.

Threads cannot be killed, so an item that exceeds its timeout is marked TIMEOUT and its
worker abandoned: the in-flight count drops at once and any late answer is ignored. The
pool reuses idle workers and only grows when all are busy, so threads stay bounded by
the level plus the abandoned ones (which the failure budget bounds in turn).

Partitions (`partition=`): the items split into lanes by a key (Ironic's conductor group or
shard), each with its own climber, failure budget and profile entry, run by the same main
thread: a lane whose service is slow or failing backs off and stops alone while the others
climb on. One lane (no key, or every item with the same key) is the engine as it was.
"""
from __future__ import annotations

import logging
import queue
import resource
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import tenacity

from k1prov import settings
from k1prov.errors import K1provError
from k1prov.fanout.cancel import CancelToken
from k1prov.fanout.cancel import set_current as set_current_cancel
from k1prov.fanout.climber import Climber, Window
from k1prov.fanout.events import EventSink, NullSink
from k1prov.fanout.policy import Policy
from k1prov.fanout.profiles import ProfileStore
from k1prov.fanout.results import Partition, Report, Result, Status

log = logging.getLogger("k1prov.fanout")

T = TypeVar("T")

DEFAULT_START = 4
# File descriptors one in-flight item may hold (SSH socket, gateway channel, pipes) and
# the ones the process needs for itself; used to keep the ceiling under RLIMIT_NOFILE.
_FDS_PER_ITEM = 4
_RESERVED_FDS = 64
_ERROR_MAX = 500
# Longest the main loop sleeps without looking at deadlines.
_MAX_WAIT = 0.5

BUDGET_EXHAUSTED = "failure budget exhausted"
DEADLINE_REACHED = "run deadline reached"
CANCELLED = "cancelled"
CANCELLED_IN_FLIGHT = "cancelled while running (outcome unknown)"


def default_is_transient(exc: BaseException) -> bool:
    """Failures worth another attempt, and a sign of too many in flight: a k1prov error
    that says so (TransportError, CloudError with transient=True), a dropped or refused
    connection, a timeout, an HTTP 502/503/504. The one classifier; k1prov.cloud adds only
    what needs the SDK's own exception types."""
    if isinstance(exc, K1provError):
        return bool(getattr(exc, "transient", False))
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    # openstack.exceptions.HttpException, without importing openstack here.
    if any(cls.__name__ == "HttpException" for cls in type(exc).__mro__):
        return getattr(exc, "status_code", None) in (502, 503, 504)
    return False


def one_line(exc: BaseException) -> str:
    if isinstance(exc, K1provError):
        return str(exc)
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    return text[:_ERROR_MAX]


def tail(text: str, limit: int) -> str:
    return text[-limit:] if len(text) > limit else text


def _is_command_result(value: Any) -> bool:
    return all(hasattr(value, name) for name in ("stdout", "exited", "ok"))


def effective_ceiling(requested: int) -> int:
    """min(requested, MAX_CONCURRENCY, what the fd limit allows); raises the soft fd limit
    to the hard one when the ceiling needs more descriptors than the soft limit gives."""
    want = max(1, min(requested, settings.MAX_CONCURRENCY))
    need = _RESERVED_FDS + want * _FDS_PER_ITEM
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
            log.info("raised the open-file limit to %s for %d concurrent items", hard, want)
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-file limit (%s); staying at %s", exc, soft)
    if soft != resource.RLIM_INFINITY:
        want = min(want, max(1, (soft - _RESERVED_FDS) // _FDS_PER_ITEM))
    return want


class _Flight:
    """One started item, as the main thread sees it."""

    __slots__ = ("index", "lane", "started", "deadline", "abandoned", "by_run_deadline", "token",
                 "given_up", "last_error")

    def __init__(self, index: int, lane: "_Lane", started: float, deadline: float,
                 by_run_deadline: bool):
        self.index, self.lane, self.started, self.deadline = index, lane, started, deadline
        self.by_run_deadline = by_run_deadline
        self.abandoned = False     # set by the main thread; read by the worker between attempts
        self.token = CancelToken()  # set when the engine gives up on the item (fn may watch it)
        self.given_up: str | None = None  # why, while waiting `cancel_wait` for its report
        # The transient failure it is waiting to try again after (set by the worker): a
        # timeout names it, so "timed out" says what kept the item from finishing.
        self.last_error: str | None = None


class _Pool:
    """Reusable daemon worker threads, grown on demand (like ThreadPoolExecutor, but an
    abandoned worker never blocks a new item: a busy pool simply grows)."""

    def __init__(self, target: Callable[[Any], Callable[[], None]]):
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)
        self._target = target
        self.threads = 0

    def submit(self, job: Any) -> None:
        self._jobs.put(job)
        if self._idle.acquire(blocking=False):
            return
        self.threads += 1
        threading.Thread(target=self._work, name=f"k1prov-fanout-{self.threads}",
                         daemon=True).start()

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            report = self._target(job)
            # Idle before the result is seen: the main thread submits the next item as soon
            # as it reads a result and must find this worker free; released after the
            # result, a loaded machine let the pool grow past the concurrency level.
            self._idle.release()
            report()

    def shutdown(self) -> None:
        # Idle workers exit now, abandoned ones when their fn returns; nobody waits.
        for _ in range(self.threads):
            self._jobs.put(None)


class _Lane:
    """One partition of the items: its own climber, queue position, in-flight count and
    failure budget. A run without partitions has one lane, named ""."""

    def __init__(self, name: str, indices: list[int], climber: Climber, profile_endpoint: str):
        self.name, self.indices, self.climber = name, indices, climber
        self.profile_endpoint = profile_endpoint
        self.pos = 0                # next of `indices` to start
        self.inflight = 0
        self.failures = 0
        self.stop_reason: str | None = None
        self.trace: list[tuple[float, int, float]] = []

    @property
    def total(self) -> int:
        return len(self.indices)

    def has_more(self) -> bool:
        return self.pos < len(self.indices)


def partition_label(name: str) -> str:
    """How a lane is named in logs, profile keys and skip reasons."""
    return name if name else "(no group)"


class _Run:
    def __init__(self, items: list, keys: list[str], fn: Callable[[Any], Any], policy: Policy,
                 sink: EventSink, is_transient: Callable[[BaseException], bool],
                 parts: list[str] | None = None):
        self.items, self.keys, self.fn, self.policy = items, keys, fn, policy
        self.sink, self.is_transient = sink, is_transient
        self.total = len(items)
        self.results: list[Result | None] = [None] * self.total
        self.inflight: dict[int, _Flight] = {}
        self.stop_reason: str | None = None
        self.cancelled = self.budget_exhausted = self.deadline_hit = False
        self.trace: list[tuple[float, int, float]] = []
        self.done_q: queue.SimpleQueue = queue.SimpleQueue()
        self.pool = _Pool(self._work)
        self.t0 = time.monotonic()
        self.run_deadline = self.t0 + policy.deadline if policy.deadline is not None else None
        self.store = ProfileStore(policy.profile_path) if policy.profile_path else None
        self.lanes = self._make_lanes(parts)
        # The hard limits (fds, MAX_CONCURRENCY) hold for the whole run, lanes together.
        self.max_inflight = effective_ceiling(
            sum(lane.climber.ceiling for lane in self.lanes)) if len(self.lanes) > 1 else None

    # ---- set-up -------------------------------------------------------------------------
    def _make_lanes(self, parts: list[str] | None) -> list[_Lane]:
        by_name: dict[str, list[int]] = {}
        for index in range(self.total):
            by_name.setdefault(parts[index] if parts is not None else "", []).append(index)
        if len(by_name) <= 1:
            # One lane: the engine as without partitions (profile key, level, budget).
            only = next(iter(by_name), "")
            return [_Lane(only, list(range(self.total)),
                          self._make_climber(self.policy.endpoint), self.policy.endpoint)]
        lanes = []
        for name, indices in by_name.items():
            endpoint = f"{self.policy.endpoint} [{partition_label(name)}]"
            lanes.append(_Lane(name, indices, self._make_climber(endpoint, name), endpoint))
        return lanes

    def _make_climber(self, endpoint: str, lane: str = "") -> Climber:
        p = self.policy
        if p.concurrency is not None:
            # The operator's fixed level overrides the adaptive ceiling (a guard for the
            # climber, e.g. Ironic's 24); the hard limits (fds, MAX_CONCURRENCY) still hold.
            # With partitions the level is each partition's (each its own conductors).
            return Climber(start=p.concurrency, fixed=True, now=0.0, min_window=p.window,
                           ceiling=effective_ceiling(max(p.max_concurrency, p.concurrency)))
        common = dict(ceiling=effective_ceiling(p.max_concurrency), now=0.0, min_window=p.window)
        if p.start_concurrency is not None:
            return Climber(start=p.start_concurrency, **common)
        remembered = self.store.get(p.kind, endpoint) if self.store is not None else None
        if remembered is not None:
            log.info("%s%s: starting at concurrency %d from the profile", p.kind,
                     f" [{partition_label(lane)}]" if endpoint != p.endpoint else "", remembered)
            return Climber(start=remembered, from_profile=True, **common)
        return Climber(start=DEFAULT_START, **common)

    def level(self) -> int:
        """The run's concurrency: the sum of its lanes' levels."""
        return sum(lane.climber.level for lane in self.lanes)

    # ---- worker side --------------------------------------------------------------------
    def _work(self, job: tuple[_Flight, Any]) -> Callable[[], None]:
        """Run one item; return how to report it (the pool calls that once it is idle)."""
        flight, item = job
        set_current_cancel(flight.token)
        try:
            result, congested = self._attempts(flight, item)
        except BaseException as exc:  # noqa: BLE001 - a worker must always report back
            result = Result(self.keys[flight.index], Status.FAILED, error=one_line(exc))
            congested = False
        finally:
            set_current_cancel(None)
        result.duration = time.monotonic() - flight.started
        return lambda: self.done_q.put(("done", flight.index, result, congested))

    def _attempts(self, flight: _Flight, item: Any) -> tuple[Result, bool]:
        p, key = self.policy, self.keys[flight.index]
        attempts = 0

        def call() -> Any:
            nonlocal attempts
            attempts += 1
            return self.fn(item)

        def give_up(state: tenacity.RetryCallState) -> bool:
            return flight.abandoned or time.monotonic() + p.retry_wait >= flight.deadline

        def before_sleep(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            flight.last_error = one_line(exc) if exc else None
            log.info("%s: transient failure (attempt %d of %d), retrying: %s", key,
                     state.attempt_number, p.retries + 1, flight.last_error or "?")
            self.done_q.put(("congestion", flight.index, None, True))

        def transient(exc: BaseException) -> bool:
            try:
                return bool(self.is_transient(exc))
            except Exception:  # noqa: BLE001 - a broken predicate means "not transient"
                return False

        retrying = tenacity.Retrying(
            stop=tenacity.stop_any(tenacity.stop_after_attempt(max(0, p.retries) + 1), give_up),
            wait=tenacity.wait_exponential(multiplier=p.retry_wait, min=p.retry_wait,
                                           max=p.retry_wait * 8)
            + tenacity.wait_random(0, p.retry_wait / 2),
            retry=tenacity.retry_if_exception(transient),
            before_sleep=before_sleep, reraise=True)
        try:
            value = retrying(call)
        except Exception as exc:  # noqa: BLE001 - every failure becomes data
            # invoke's UnexpectedExit carries the command's result: report it as one.
            carried = getattr(exc, "result", None)
            if _is_command_result(carried):
                return self._command_result(key, carried, attempts), False
            return Result(key, Status.FAILED, attempts=attempts, error=one_line(exc)), \
                transient(exc)
        if _is_command_result(value):
            return self._command_result(key, value, attempts), False
        if isinstance(value, str):
            text = tail(value, p.output_limit)
            return Result(key, Status.OK, attempts=attempts, output=text, value=text), False
        return Result(key, Status.OK, attempts=attempts, value=value), False

    def _command_result(self, key: str, res: Any, attempts: int) -> Result:
        """A Fabric/invoke-like result: keep the output tail and exit code, not the object
        (its full stdout would defeat the memory bound). Non-zero exit is FAILED."""
        stdout = res.stdout or ""
        stderr = getattr(res, "stderr", "") or ""
        text = stdout if not stderr.strip() else stdout + ("" if stdout.endswith("\n") or
                                                           not stdout else "\n") + stderr
        code = res.exited
        if res.ok:
            return Result(key, Status.OK, attempts=attempts, output=tail(text, self.policy.output_limit),
                          exit_code=code)
        last = [line for line in stderr.splitlines() if line.strip()]
        error = f"exit code {code}" + (f": {last[-1].strip()[:_ERROR_MAX]}" if last else "")
        return Result(key, Status.FAILED, attempts=attempts, error=error,
                      output=tail(text, self.policy.output_limit), exit_code=code)

    # ---- main thread --------------------------------------------------------------------
    def _now(self) -> float:
        return time.monotonic() - self.t0

    def execute(self) -> Report:
        started_wall = time.time()
        self.sink.on_start(self.total, self.policy)
        self.sink.on_concurrency(self.level())
        try:
            try:
                self._loop()
            except KeyboardInterrupt:
                self._cancel()
            self._mark_unfinished()
        finally:
            self.pool.shutdown()
        partitions = {} if len(self.lanes) == 1 else {
            lane.name: Partition(name=lane.name, items=lane.total,
                                 final_concurrency=lane.climber.level, trace=lane.trace,
                                 stop_reason=lane.stop_reason)
            for lane in self.lanes}
        report = Report(results=[r for r in self.results if r is not None], trace=self.trace,
                        started=started_wall, finished=time.time(), cancelled=self.cancelled,
                        budget_exhausted=self.budget_exhausted, deadline_hit=self.deadline_hit,
                        kind=self.policy.kind, endpoint=self.policy.endpoint,
                        final_concurrency=self.level(), partitions=partitions)
        self._remember()
        self.sink.on_finish(report)
        return report

    def _loop(self) -> None:
        while True:
            self._dispatch()
            if not self.inflight and (self.stop_reason or not any(
                    lane.has_more() and lane.stop_reason is None for lane in self.lanes)):
                return
            try:
                message = self.done_q.get(timeout=self._wait_time())
            except queue.Empty:
                message = None
            while message is not None:
                self._handle(message)
                try:
                    message = self.done_q.get_nowait()
                except queue.Empty:
                    message = None
            self._expire()

    def _stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
            log.info("%s: no new items: %s", self.policy.kind, reason)

    def _dispatch(self) -> None:
        # Lanes take turns, one item each, so that none waits behind another's queue.
        started = True
        while started:
            started = False
            for lane in self.lanes:
                if self.stop_reason is not None:
                    break
                if (lane.has_more() and lane.stop_reason is None
                        and lane.inflight < lane.climber.level
                        and (self.max_inflight is None or len(self.inflight) < self.max_inflight)):
                    if not self._start(lane):
                        break
                    started = True
        for lane in self.lanes:
            if (not lane.has_more() or lane.stop_reason or self.stop_reason) \
                    and not lane.climber.draining:
                lane.climber.drain()

    def _start(self, lane: _Lane) -> bool:
        """Start the lane's next item; False when the run's deadline is reached."""
        p = self.policy
        now = time.monotonic()
        if self.run_deadline is not None and now >= self.run_deadline:
            self.deadline_hit = True
            self._stop(DEADLINE_REACHED)
            return False
        index = lane.indices[lane.pos]
        lane.pos += 1
        lane.inflight += 1
        deadline = now + p.item_timeout
        by_run = self.run_deadline is not None and self.run_deadline < deadline
        flight = _Flight(index, lane, now, min(deadline, self.run_deadline) if by_run else deadline,
                         by_run)
        self.inflight[index] = flight
        self.pool.submit((flight, self.items[index]))
        self.sink.on_item_start(self.keys[index])
        return True

    def _wait_time(self) -> float:
        now = time.monotonic()
        soonest = min((f.deadline for f in self.inflight.values()), default=now + _MAX_WAIT)
        if self.run_deadline is not None:
            soonest = min(soonest, self.run_deadline)
        return min(max(soonest - now, 0.0), _MAX_WAIT)

    def _handle(self, message: tuple) -> None:
        kind, index, result, congested = message
        if index not in self.inflight:
            return      # late answer of an abandoned item
        if kind == "congestion":
            lane = self.inflight[index].lane
            self._observe(lane, lane.climber.congestion(self._now()))
            return
        flight = self.inflight.pop(index)
        flight.lane.inflight -= 1
        if flight.given_up is not None and result.status is not Status.OK:
            # It reported within cancel_wait after the engine gave up: a timeout, with the
            # fn's own account of how the work ended (e.g. "...; ended on the host").
            result.status = Status.TIMEOUT
            result.error = result.error or flight.given_up
            congested = not flight.by_run_deadline
        self._finish(flight.lane, index, result, congested)

    def _finish(self, lane: _Lane, index: int, result: Result, congested: bool) -> None:
        self.results[index] = result
        if result.status in (Status.FAILED, Status.TIMEOUT):
            lane.failures += 1
            if lane.failures > self.policy.failure_budget * lane.total:
                # Each lane's budget is its own: a group whose conductors fail stops alone.
                self.budget_exhausted = True
                if len(self.lanes) == 1:
                    self._stop(BUDGET_EXHAUSTED)
                elif lane.stop_reason is None:
                    lane.stop_reason = f"{BUDGET_EXHAUSTED} in {partition_label(lane.name)}"
                    log.info("%s: no new items in %s: %s", self.policy.kind,
                             partition_label(lane.name), BUDGET_EXHAUSTED)
        self._observe(lane, lane.climber.complete(self._now(), congested=congested))
        self.sink.on_item_done(result)

    def _expire(self) -> None:
        now = time.monotonic()
        for flight in [f for f in self.inflight.values() if now >= f.deadline]:
            if flight.by_run_deadline:
                self.deadline_hit = True
                error = DEADLINE_REACHED
            else:
                error = f"timed out after {self.policy.item_timeout:g}s"
                if flight.last_error:
                    error += f" (last try: {flight.last_error})"
            flight.token.cancel(error)
            if flight.given_up is None and self.policy.cancel_wait > 0:
                # Asked to stop: give it cancel_wait to say how its work ended.
                flight.given_up = error
                flight.deadline = now + self.policy.cancel_wait
                continue
            del self.inflight[flight.index]
            flight.lane.inflight -= 1
            flight.abandoned = True
            result = Result(self.keys[flight.index], Status.TIMEOUT,
                            duration=now - flight.started, error=flight.given_up or error)
            self._finish(flight.lane, flight.index, result, congested=not flight.by_run_deadline)
        if self.run_deadline is not None and now >= self.run_deadline \
                and any(lane.has_more() and lane.stop_reason is None for lane in self.lanes):
            self.deadline_hit = True
            self._stop(DEADLINE_REACHED)

    def _observe(self, lane: _Lane, window: Window | None) -> None:
        if window is None:
            return
        sample = (round(window.t, 4), window.level, window.throughput)
        self.trace.append(sample)
        lane.trace.append(sample)
        if window.new_level != window.level:
            log.debug("%s%s: concurrency %d -> %d (%.1f items/s)", self.policy.kind,
                      f" [{partition_label(lane.name)}]" if len(self.lanes) > 1 else "",
                      window.level, window.new_level, window.throughput)
            self.sink.on_concurrency(self.level())

    def _cancel(self) -> None:
        """Ctrl-C: start nothing new, give in-flight items a bounded grace, then stop."""
        self.cancelled = True
        self._stop(CANCELLED)
        log.warning("%s: interrupted; waiting up to %gs for %d running item(s)",
                    self.policy.kind, self.policy.cancel_grace, len(self.inflight))
        for flight in self.inflight.values():
            flight.token.cancel("interrupted")
        until = time.monotonic() + self.policy.cancel_grace
        try:
            while self.inflight and time.monotonic() < until:
                try:
                    message = self.done_q.get(timeout=min(_MAX_WAIT, max(0.0, until - time.monotonic())))
                except queue.Empty:
                    continue
                self._handle(message)
                self._expire()
        except KeyboardInterrupt:
            log.warning("%s: interrupted again; not waiting any longer", self.policy.kind)

    def _mark_unfinished(self) -> None:
        for lane in self.lanes:
            reason = self.stop_reason or lane.stop_reason or CANCELLED
            for index in lane.indices:
                if self.results[index] is not None:
                    continue
                flight = self.inflight.pop(index, None)
                if flight is not None:
                    flight.abandoned = True
                    flight.token.cancel(CANCELLED_IN_FLIGHT)
                    error, duration = CANCELLED_IN_FLIGHT, time.monotonic() - flight.started
                else:
                    error, duration = reason, 0.0
                self.results[index] = Result(self.keys[index], Status.SKIPPED,
                                             duration=duration, error=error)

    def _remember(self) -> None:
        if self.store is None:
            return
        for lane in self.lanes:
            level = lane.climber.converged_level
            if level is None:
                continue
            try:
                self.store.put(self.policy.kind, lane.profile_endpoint, level)
            except OSError as exc:
                log.warning("could not save the concurrency profile %s: %s",
                            self.policy.profile_path, exc)
                return


def run_fanout(items: Iterable[T], fn: Callable[[T], Any], *, key: Callable[[T], str],
               policy: Policy, events: EventSink | None = None,
               is_transient: Callable[[BaseException], bool] = default_is_transient,
               partition: Callable[[T], str] | None = None) -> Report:
    """Run fn on every item with bounded, adaptive concurrency; one Result per item.

    `partition`: the items' lanes (e.g. Ironic's conductor group), each run with its own
    climber and failure budget (module docstring); results stay in input order.
    Never raises because items failed. Ctrl-C returns the report with `cancelled` set.
    """
    listed = list(items)
    keys = [str(key(item)) for item in listed]
    parts = [str(partition(item) or "") for item in listed] if partition is not None else None
    run = _Run(listed, keys, fn, policy, events if events is not None else NullSink(),
               is_transient, parts)
    return run.execute()
