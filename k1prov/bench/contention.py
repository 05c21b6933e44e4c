"""`bench kmeans --contention`: K-means against a competing Mesos framework.

The testbed report's second claim: when the cluster's resources are not enough,
fine-grained Spark is faster, since a coarse-grained job waits until it holds what it
asked for while a fine-grained one runs a task with whatever is offered. To try it,
`bench kmeans` runs its coarse and fine submits once per contention level; at a level
above 0 a competing framework (k1prov.bench.drf_frameworks' Holder, the framework
`bench drf` uses, in a mode of its own) runs in its own role (`contention`) on the
driver host and:

- holds that fraction of every agent's cpus and memory, in tasks of 1/8 of the agent
  (levels are whole tasks: 0.125, 0.25, ..., 0.875), so no agent is left whole;
- releases them as another team's stream of jobs would: a task ends every
  `release_every` seconds (4 s by default; the first fill staggered, agents in turn),
  and the framework wants the slot back at once (it revives its role). The allocator
  (DRF) offers what was freed first to the role with the lowest share, Spark's while
  Spark holds less, so Spark gets what it can use of it; what Spark declines (Spark
  declines an offer it cannot use for 5 s) goes back to the competitor.

Before each submit k1prov waits until the competitor holds its whole share again (read
from the leading master, two samples in a row: `hold_timeout`), so every submit starts
from the same point. While the submits run, the competitor samples its role's allocation
from the leading master every second (the `bench drf` sampler): what it held at each
submit's start, its least and its median are in the result, beside the times.

Teardown, always (`Competitor` is a context manager): a stop file tells the competitor
to tear its framework down and exit; if it has not within `STOP_TIMEOUT`, its SSH
session is ended (SIGTERM: the same teardown); then, whatever happened, k1prov tears
down every framework with the competitor's name on the leading master (a name unique to
the run and level) and waits until its role holds nothing. Ctrl-C and failed submits
go through the same path; a k1prov that is killed outright leaves the competitor to its
session's watchdog (k1prov.ssh: ended when the SSH session goes) and its `max_seconds`,
and the next run tears down any competitor left disconnected.
"""
from __future__ import annotations

import logging
import re
import shlex
import statistics
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from k1prov.bench.drf import frameworks_script, parse_lines
from k1prov.bench.drf_frameworks import HOLD_PREFIX
from k1prov.bench.number_lists import parse_number_list
from k1prov.context import VerbContext
from k1prov.errors import ConfigError, TransportError
from k1prov.fanout.cancel import CancelToken
from k1prov.ssh import CommandResult, SshTarget, put_and_run, run_command

log = logging.getLogger("k1prov.bench")

CONTENTION_ROLE = "contention"
DEFAULT_RELEASE_EVERY = 4.0
DEFAULT_SLOTS_PER_AGENT = 8
# Until the competitor holds its whole share (before each submit; the first time it also
# subscribes and fills the agents a task per allocation cycle or so).
HOLD_TIMEOUT = 180.0
# The competitor's own teardown after the stop file (a TEARDOWN call, HTTP_TIMEOUT 10 s).
STOP_TIMEOUT = 30.0
# The teardown k1prov does itself afterwards: the framework gone and its role empty (the
# script waits up to its IDLE_AFTER_TEARDOWN_TIMEOUT, 60 s), plus pushing the script.
TEARDOWN_TIMEOUT = 120.0
# One short command on the driver host (the stop file, a look at the status).
CONTROL_TIMEOUT = 30.0
# Beyond the submits' own limits: Python start-up, subscribing (the script's 60 s), the fill.
HOLDER_SLACK_SECONDS = 300.0
# Where the competitor's status and stop files live on the driver host.
STATUS_ROOT = "/tmp/k1prov-contention"


@dataclass(frozen=True)
class ContentionOptions:
    levels: tuple[float, ...] = (0.0,)
    release_every: float = DEFAULT_RELEASE_EVERY
    slots_per_agent: int = DEFAULT_SLOTS_PER_AGENT
    role: str = CONTENTION_ROLE
    hold_timeout: float = HOLD_TIMEOUT


def parse_levels(text: str, *, slots_per_agent: int = DEFAULT_SLOTS_PER_AGENT) -> tuple[float, ...]:
    """'0,0.5,0.75' -> (0.0, 0.5, 0.75): each in [0, 1) and a whole number of the
    competitor's tasks (1/slots_per_agent of an agent), in the order given, no repeats."""
    def check(value: float, part: str) -> None:
        if not 0.0 <= value < 1.0:
            raise ConfigError(f"--contention: {part} must be at least 0 and below 1 (a share of every agent)")
        tasks = value * slots_per_agent
        if abs(tasks - round(tasks)) > 1e-9:
            below, above = int(tasks) / slots_per_agent, (int(tasks) + 1) / slots_per_agent
            raise ConfigError(f"--contention: {part} is not a whole number of the competing framework's tasks "
                              f"(1/{slots_per_agent} of an agent each): {below:g} or {above:g}")

    return parse_number_list(text, option="--contention", what="level", check=check)


def held(sample: dict[str, Any]) -> float:
    """The share the competitor held in one sample: the lesser of its cpus and memory shares."""
    share = sample.get("share") or {}
    return min(float(share.get("cpus", 0.0)), float(share.get("mem", 0.0)))


def share_during(samples: list[dict[str, Any]], start: float, end: float) -> dict[str, float | None]:
    """What the competitor held over [start, end] (epoch seconds): at the start (the last
    sample at or before it, else the first after), the least and the median in between."""
    if not samples:
        return {"held_start": None, "held_min": None, "held_median": None}
    ordered = sorted(samples, key=lambda s: s["epoch"])
    before = [s for s in ordered if s["epoch"] <= start]
    inside = [held(s) for s in ordered if start <= s["epoch"] <= end]
    first = before[-1] if before else ordered[0]
    return {"held_start": round(held(first), 4),
            "held_min": round(min(inside), 4) if inside else None,
            "held_median": round(statistics.median(inside), 4) if inside else None}


@dataclass
class CompetitorRun:
    """What one competitor (one contention level) did, from its own lines."""
    level: float
    host: str
    name: str
    role: str
    plan: list[dict[str, Any]] = field(default_factory=list)
    target: dict[str, float] = field(default_factory=dict)
    release_every: float = 0.0
    task_seconds: float = 0.0
    samples: list[dict[str, Any]] = field(default_factory=list)
    launched: int = 0
    ended: int = 0
    errors: list[str] = field(default_factory=list)
    torn_down: list[str] = field(default_factory=list)
    leftover_hold: dict[str, float] | None = None     # what its role held after the teardown

    def to_dict(self) -> dict[str, Any]:
        return {"level": self.level, "host": self.host, "name": self.name, "role": self.role,
                "plan": self.plan, "target": self.target, "release_every": self.release_every,
                "task_seconds": self.task_seconds, "launched": self.launched, "ended": self.ended,
                "errors": self.errors, "torn_down": self.torn_down, "leftover_hold": self.leftover_hold,
                "samples": [{"epoch": s["epoch"], "t": s.get("t"), "held": round(held(s), 4),
                             "cpus": (s.get("roles") or {}).get(self.role, {}).get("cpus"),
                             "mem": (s.get("roles") or {}).get(self.role, {}).get("mem"),
                             "running": s.get("running")} for s in self.samples]}


def read_lines(run: CompetitorRun, lines: list[dict[str, Any]]) -> CompetitorRun:
    """Fill a CompetitorRun from the holder's JSON lines."""
    for record in lines:
        event = record.get("event")
        if event == "plan":
            run.plan = list(record.get("agents") or [])
            run.target = dict(record.get("target") or {})
            run.release_every = float(record.get("release_every") or 0.0)
            run.task_seconds = float(record.get("task_seconds") or 0.0)
        elif event == "sample" and "epoch" in record:
            run.samples.append(record)
        elif event == "error":
            run.errors.append(str(record.get("error")))
        elif event == "done":
            run.launched = int((record.get("launched") or {}).get(run.role, 0))
            run.ended = int(record.get("ended") or 0)
    return run


def run_token(run_dir_name: str, level: float) -> str:
    """Names the competitor of one run and level: its framework and its status directory."""
    stamp = re.sub(r"[^A-Za-z0-9]+", "-", run_dir_name).strip("-")
    return f"{stamp}-{level:g}"


class Competitor:
    """One level's competing framework on the driver host, for the duration of a `with`."""

    def __init__(self, ctx: VerbContext, target: SshTarget, *, level: float, token: str,
                 options: ContentionOptions, max_seconds: float) -> None:
        # The context's inventory, timeouts and notifications, as every verb reads them.
        self.inv, self.target, self.level, self.options = ctx.inventory, target, level, options
        self.timeouts = ctx.timeouts
        self.max_seconds = max_seconds
        self.say = ctx.notify
        self.name = HOLD_PREFIX + token
        self.status_dir = f"{STATUS_ROOT}-{token}"
        self.run = CompetitorRun(level=level, host=target.host, name=self.name, role=options.role)
        self._cancel = CancelToken()
        self._result: CommandResult | None = None
        self._error: str | None = None
        self._thread = threading.Thread(target=self._hold, name=f"competitor-{level:g}", daemon=True)

    # ---- the holder, in a thread of its own
    def holder_args(self) -> list[str]:
        return ["--hold", f"{self.options.role}:{self.level:g}", "--name", self.name,
                "--status-dir", self.status_dir, "--max-seconds", f"{self.max_seconds:g}",
                "--release-every", f"{self.options.release_every:g}",
                "--slots-per-agent", str(self.options.slots_per_agent)]

    def _hold(self) -> None:
        script = frameworks_script(self.inv, self.holder_args(), needs="bench kmeans --contention")
        try:
            self._result = put_and_run(self.target, script, connect_timeout=self.timeouts.ssh_connect,
                                       command_timeout=self.max_seconds + HOLDER_SLACK_SECONDS,
                                       cancel=self._cancel)
        except TransportError as exc:
            self._error = str(exc)

    def __enter__(self) -> "Competitor":
        self.say(f"contention {self.level:g}: competing framework {self.name} in role {self.options.role} "
                 f"on {self.target.host}, a task ending every {self.options.release_every:g} s")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- before each submit
    def wait_holding(self) -> str | None:
        """None once the competitor holds its whole share, else why not (a Failure's reason)."""
        timeout = self.options.hold_timeout
        d = shlex.quote(self.status_dir)
        check = (f"end=$(( $(date +%s) + {int(timeout)} )); "
                 f"while :; do "
                 f"if [ -f {d}/status.json ] && grep -q '\"holding\": true' {d}/status.json; then exit 0; fi; "
                 f"if [ -f {d}/exit.json ]; then cat {d}/exit.json; exit 3; fi; "
                 f"if [ \"$(date +%s)\" -ge \"$end\" ]; then cat {d}/status.json 2>/dev/null; exit 2; fi; "
                 f"sleep 0.5; done")
        if not self._thread.is_alive():
            return f"the competing framework is not running: {self._error or self._ended_why()}"
        try:
            res = run_command(self.target, check, connect_timeout=self.timeouts.ssh_connect,
                              command_timeout=timeout + CONTROL_TIMEOUT)
        except TransportError as exc:
            return f"could not look at the competing framework: {exc}"
        if res.exit_code == 0:
            return None
        if res.exit_code == 3:
            return f"the competing framework ended: {res.stdout.strip()[:300]}"
        return (f"the competing framework did not hold {self.level:g} of every agent within "
                f"{timeout:g} s (last sample: {res.stdout.strip()[:300] or 'none'})")

    def _ended_why(self) -> str:
        res = self._result
        if res is None:
            return "no output"
        tail = [ln for ln in res.stderr.splitlines() if ln.strip()][-2:]
        return f"exited {res.exit_code}: {' | '.join(tail) or 'no output'}"

    # ---- afterwards, always
    def stop(self) -> CompetitorRun:
        """Stop file, else end its session; then tear its framework down on the leading
        master whatever happened, and read what it did."""
        d = shlex.quote(self.status_dir)
        try:
            run_command(self.target, f"mkdir -p {d} && touch {d}/stop", connect_timeout=self.timeouts.ssh_connect,
                        command_timeout=CONTROL_TIMEOUT)
        except TransportError as exc:
            self.run.errors.append(f"stop file: {exc}")
        self._thread.join(STOP_TIMEOUT)
        if self._thread.is_alive():
            self._cancel.cancel(f"did not stop within {STOP_TIMEOUT:g} s of its stop file")
            self._thread.join(STOP_TIMEOUT)
        if self._error:
            self.run.errors.append(self._error)
        if self._result is not None:
            read_lines(self.run, parse_lines(self._result.stdout))
            if self._result.exit_code != 0:
                self.run.errors.append(f"competing framework {self._ended_why()}")
        self._teardown()
        self.say(f"contention {self.level:g}: competing framework torn down "
                 f"({self.run.launched} tasks launched, {self.run.ended} ended)")
        return self.run

    def _teardown(self) -> None:
        # The status directory goes too (the holder has exited, or its session was ended).
        script = frameworks_script(self.inv, ["--teardown", self.name, "--hold", f"{self.options.role}:{self.level:g}"],
                                   needs="bench kmeans --contention", remove_after=self.status_dir)
        try:
            res = put_and_run(self.target, script, connect_timeout=self.timeouts.ssh_connect,
                              command_timeout=TEARDOWN_TIMEOUT)
        except TransportError as exc:
            self.run.errors.append(f"teardown: {exc}")
            return
        for record in parse_lines(res.stdout):
            if record.get("event") == "torn_down":
                self.run.torn_down = [str(f) for f in record.get("frameworks") or []]
                self.run.leftover_hold = record.get("held")
        if res.exit_code != 0:
            tail = [ln for ln in res.stderr.splitlines() if ln.strip()][-2:]
            self.run.errors.append(f"teardown exited {res.exit_code}: {' | '.join(tail) or 'no output'}")
