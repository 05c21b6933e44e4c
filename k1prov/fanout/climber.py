"""Hill climbing of the concurrency level on measured throughput (the MOHA method).

A pure object: the engine feeds it completions and congestion signals with their
timestamps and reads `level`; it never looks at a clock or a thread, so a test drives it
with a simulated workload and gets the same decisions every time.

- Windows: one closes once it holds max(min_events, level) events (a generation at that
  level) and min_window seconds; throughput = completions / its length. The window after
  each change settles (items of the old level still finish) and decides nothing; nor
  does a run's first, which holds the ramp-up and reads low (taken as the start level's
  throughput, it walked a profile's start up by one every run); nor do windows after
  `drain()`, when fewer than `level` items are left.
- grow: from a default start, double while throughput gains more than `grow_gain`; a
  doubling that gains less is past the knee (more would only queue, or thrash): search
  below it.
- fine: around the best level B with step s, probe B+s and B-s (windows of
  `fine_generations`); move when a probe beats B by more than `gain` (noise must not
  move the level up), else halve s; at the finest step (B/10, at least 1) with no better
  neighbour, B has converged. A probe below B that is no worse wins: on a flat curve (a
  one-worker Ironic) fewer in flight do the same work with less load.
- steady: stay at B; re-probe the finest step after `reprobe_every` windows (the service
  can change), doubling that interval (up to 8x) each time B is confirmed; search again
  at once if throughput drops by `drop`.
- congestion (transient errors, timeouts) in more than `congestion_share` of a window's
  events: cap below the congested level and back off by a quarter (one dead host among
  many moves nothing).
- A start level from an earlier run's profile skips grow: a fine search with small
  steps from there.
"""
from __future__ import annotations

from dataclasses import dataclass

GROW, FINE, STEADY, FIXED = "grow", "fine", "steady", "fixed"


@dataclass(frozen=True)
class Window:
    """One closed measurement window."""

    t: float              # when it closed (the caller's clock)
    level: int            # level in force while it was measured
    throughput: float     # completions per second
    completions: int
    congestion: int
    settling: bool        # True: not used for a decision
    new_level: int        # level decided at its end


def _finest_step(level: int) -> int:
    """The smallest step worth probing around `level`: about a tenth of it. Past the
    optimum, throughput often falls like 1/level, so +/-1 around 30 changes it by ~3%,
    inside the `gain` threshold and the noise: a climber limited to +/-1 steps there
    stops wherever it happens to be. A tenth of the level moves throughput by ~10%."""
    return max(1, level // 10)


class Climber:
    def __init__(self, *, start: int, ceiling: int, now: float = 0.0, fixed: bool = False,
                 from_profile: bool = False, min_window: float = 0.2, min_events: int = 4,
                 gain: float = 0.05, grow_gain: float = 0.35, drop: float = 0.25,
                 congestion_share: float = 0.1, fine_generations: int = 2,
                 reprobe_every: int = 10):
        self.ceiling = max(1, int(ceiling))
        self.level = min(max(1, int(start)), self.ceiling)
        self.min_window, self.min_events = min_window, min_events
        self.gain, self.grow_gain, self.drop = gain, grow_gain, drop
        self.fine_generations = fine_generations
        self.congestion_share, self.reprobe_every = congestion_share, reprobe_every
        self._start = self.level
        self.phase = FIXED if fixed else (FINE if from_profile else GROW)
        self._cap = self.ceiling
        self._best_level: int | None = None
        self._best_tput = 0.0
        self._step = max(1, self.level // 8)
        self._tried: set[int] = set()      # directions (+1/-1) probed at this step
        self._direction = 0                # direction of the probe being measured
        self._steady_windows = 0
        self._reprobe_interval = reprobe_every
        self._last_steady: int | None = None
        self._settling = True       # the first window is the ramp-up
        self._settle_events = 0
        self._draining = False
        self._t0 = now
        self._completions = 0
        self._congestion = 0         # congested events: completions and retries
        self._retries = 0            # congestion signals that were not completions

    # ---- inputs -------------------------------------------------------------------------
    def complete(self, now: float, *, congested: bool = False) -> Window | None:
        """One item finished (any outcome); `congested`: it timed out or failed transiently."""
        self._completions += 1
        if congested:
            self._congestion += 1
        return self._maybe_close(now)

    def congestion(self, now: float) -> Window | None:
        """A transient failure that will be retried (not a completion)."""
        self._congestion += 1
        self._retries += 1
        return self._maybe_close(now)

    def drain(self) -> None:
        """Nothing more will be started: stop deciding (the level can no longer be filled)."""
        self._draining = True

    @property
    def draining(self) -> bool:
        return self._draining

    @property
    def converged_level(self) -> int | None:
        """Best level measured so far (what a profile should remember), None if unknown."""
        if self.phase == FIXED:
            return None
        return self._best_level

    # ---- windows ------------------------------------------------------------------------
    def _maybe_close(self, now: float) -> Window | None:
        events = self._completions + self._retries
        length = now - self._t0
        if self._settling:
            needed = max(self.level, self._settle_events)
        elif self.phase in (FINE, STEADY):
            # Neighbouring levels differ by a few percent: measure them longer.
            needed = self.level * self.fine_generations
        else:
            needed = self.level
        if events < max(self.min_events, needed) or length < self.min_window:
            return None
        completions, congestion = self._completions, self._congestion
        throughput = completions / length if length > 0 else 0.0
        measured, settling = self.level, self._settling or self._draining
        congested = congestion > 0 and congestion / events > self.congestion_share
        self._t0, self._completions, self._congestion, self._retries = now, 0, 0, 0
        self._settling = False
        if self.phase != FIXED and not self._draining:
            if congested:
                self._on_congestion(measured)
            elif not settling:
                self._decide(measured, throughput)
        if self.level != measured:
            # Settle until the items started at the old level are through: after a drop
            # from 16 to 4, sixteen slow items are still in flight.
            self._settling, self._settle_events = True, measured
        return Window(now, measured, throughput, completions, congestion, settling, self.level)

    # ---- decisions ----------------------------------------------------------------------
    def _set(self, level: int) -> None:
        self.level = min(max(1, level), self._cap, self.ceiling)

    def _on_congestion(self, level: int) -> None:
        if level > 1:
            self._cap = min(self._cap, level - 1)
        if self._best_level is not None and self._best_level < level:
            target = self._best_level
        else:
            target = max(1, min(level - 1, (level * 3) // 4))
            self._best_level, self._best_tput = None, 0.0
        self._step = max(1, (level - target) // 2)
        self._tried = set()
        self.phase = FINE
        self._direction = 0
        self._set(target)

    def _decide(self, level: int, tput: float) -> None:
        if self.phase == GROW:
            self._decide_grow(level, tput)
        elif self.phase == FINE:
            self._decide_fine(level, tput)
        else:
            self._decide_steady(level, tput)

    def _better(self, tput: float) -> bool:
        return tput > self._best_tput * (1.0 + self.gain)

    def _decide_grow(self, level: int, tput: float) -> None:
        previous = self._best_level
        if previous is None or self._better(tput):
            knee = previous is not None and tput < self._best_tput * (1.0 + self.grow_gain)
            self._best_level, self._best_tput = level, tput
            nxt = min(level * 2, self._cap, self.ceiling)
            if knee:
                # Doubling bought little: past the knee, where the next doubling costs
                # far more than it can gain. Search between the last two levels.
                self._step = max(1, (level - previous) // 2)
                self._tried = {+1}
            elif nxt > level:
                self._set(nxt)
                return
            else:
                # At the ceiling: search below it.
                self._step = max(1, level // 4)
                self._tried = {+1}
        else:
            best = self._best_level
            self._step = max(1, (level - best) // 2)
            # best // 2 was measured worse on the way up (unless best is where it started).
            self._tried = {-1} if best > self._start and best - self._step <= best // 2 else set()
        self.phase = FINE
        self._direction = 0
        self._probe_next()

    def _decide_fine(self, level: int, tput: float) -> None:
        if self._best_level is None or level == self._best_level:
            # A (re)measurement of the best level itself.
            if self._best_level is None:
                self._best_level, self._best_tput = level, tput
            else:
                self._best_tput = 0.5 * (self._best_tput + tput)
            self._probe_next()
            return
        direction = self._direction
        if self._better(tput):
            self._best_level, self._best_tput = level, tput
            self._tried = {-direction}
        elif direction < 0 and tput >= self._best_tput:
            # No worse with fewer in flight: take the smaller level (the same work with less
            # load on the service and, by Little's law, less latency per item). The
            # reference throughput is kept, so ties cannot walk the level down a slope.
            # Keep going down, in growing steps (a flat curve may be flat a long way).
            self._best_level = level
            self._step = max(self._step, min(self._step * 2, level // 2))
            self._tried = {+1}
        else:
            self._tried.add(direction)
        self._probe_next()

    def _probe_next(self) -> None:
        best = self._best_level
        assert best is not None
        upper = min(self._cap, self.ceiling)
        while True:
            for direction in (+1, -1):
                candidate = best + direction * self._step
                if direction in self._tried or not 1 <= candidate <= upper:
                    continue
                self._direction = direction
                self._set(candidate)
                return
            if self._step <= _finest_step(best):
                self.phase = STEADY
                self._steady_windows = 0
                if best == self._last_steady:
                    self._reprobe_interval = min(self._reprobe_interval * 2,
                                                 self.reprobe_every * 8)
                else:
                    self._reprobe_interval = self.reprobe_every
                self._last_steady = best
                self._direction = 0
                self._set(best)
                return
            self._step = max(_finest_step(best), self._step // 2)
            self._tried = set()

    def _decide_steady(self, level: int, tput: float) -> None:
        self._steady_windows += 1
        if tput < self._best_tput * (1.0 - self.drop):
            # The service changed (or the best was a lucky window): search again.
            self._best_tput = tput
            self._enter_fine(max(_finest_step(level), level // 8))
            return
        self._best_tput = 0.75 * self._best_tput + 0.25 * tput
        if self._steady_windows >= self._reprobe_interval:
            # Let a congestion cap from long ago be tested again, one step at a time.
            if self._cap < self.ceiling:
                self._cap += _finest_step(level)
            self._enter_fine(_finest_step(level))

    def _enter_fine(self, step: int) -> None:
        self.phase = FINE
        self._step = step
        self._tried = set()
        self._probe_next()
