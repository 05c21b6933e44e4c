"""The climber against simulated workloads: deterministic, no clock, no threads."""
import heapq
import random

from k1prov.fanout.climber import FIXED, STEADY, Climber


def simulate(*, best: int, n: int = 4000, start: int = 4, ceiling: int = 64,
             from_profile: bool = False, noise: float = 0.0, seed: int = 1,
             congest_above: int | None = None):
    """Items whose service time is 1.0 up to `best` in flight and grows quadratically
    beyond it (so throughput peaks at `best`). With congest_above, every item started
    above that level also reports a congestion signal (like a reset connection)."""
    rnd = random.Random(seed)
    climber = Climber(start=start, ceiling=ceiling, from_profile=from_profile, min_window=0.0)
    heap, t, started, done, in_flight, windows = [], 0.0, 0, 0, 0, []
    while done < n:
        while started < n and in_flight < climber.level:
            in_flight += 1
            started += 1
            service = 1.0 if in_flight <= best else (in_flight / best) ** 2
            service *= 1.0 + rnd.uniform(-noise, noise)
            congested = congest_above is not None and in_flight > congest_above
            heapq.heappush(heap, (t + service, congested))
        if started >= n and not climber.draining:
            climber.drain()          # as the engine does once every item has started
        t, congested = heapq.heappop(heap)
        in_flight -= 1
        done += 1
        window = climber.complete(t, congested=congested)
        if window:
            windows.append(window)
    return climber, windows


def makespan(climber, best: int, n: int = 200, seed: int = 1) -> float:
    """Simulated wall time of n items (the workload of simulate(), noise +/-20%)."""
    rnd = random.Random(seed)
    heap, t, started, done, in_flight = [], 0.0, 0, 0, 0
    while done < n:
        while started < n and in_flight < climber.level:
            in_flight += 1
            started += 1
            service = 1.0 if in_flight <= best else (in_flight / best) ** 2
            heapq.heappush(heap, t + service * (1.0 + rnd.uniform(-0.2, 0.2)))
        if started >= n and not climber.draining:
            climber.drain()
        t = heapq.heappop(heap)
        in_flight -= 1
        done += 1
        climber.complete(t)
    return t


def settled_levels(windows):
    tail = windows[len(windows) * 2 // 3:]
    return [w.level for w in tail]


def test_converges_to_the_known_best_level():
    climber, windows = simulate(best=12)
    assert climber.converged_level == 12
    levels = settled_levels(windows)
    assert all(11 <= level <= 13 for level in levels)
    # The best level is where it spends the time once settled (ping-pong is only +/-1).
    assert levels.count(12) > len(levels) * 0.7


def test_converges_from_several_starts_and_with_noise():
    for start in (1, 4, 40):
        for seed in (1, 2, 3):
            climber, windows = simulate(best=12, start=start, noise=0.2, seed=seed)
            assert 10 <= climber.converged_level <= 14, (start, seed)
            levels = settled_levels(windows)
            assert sum(10 <= lv <= 14 for lv in levels) > 0.8 * len(levels), (start, seed)


def test_other_optima():
    for best in (1, 3, 30, 50):
        climber, _ = simulate(best=best)
        assert abs(climber.converged_level - best) <= max(1, best // 10), best


def test_profile_start_skips_the_climb():
    climber, windows = simulate(best=12, start=12, from_profile=True)
    assert max(w.level for w in windows) <= 14
    assert climber.converged_level == 12
    # Settles at the best level sooner (in simulated time) than a cold start from 4.
    _, cold = simulate(best=12)

    def settled_at(ws):
        return next(w.t for i, w in enumerate(ws) if i > 3 and w.level == 12 and
                    ws[i - 1].level == 12 and w.new_level == 12)
    assert settled_at(windows) < settled_at(cold)


def test_never_exceeds_the_ceiling():
    climber, windows = simulate(best=100, ceiling=20)
    assert max(w.new_level for w in windows) <= 20
    assert climber.converged_level == 20


def test_congestion_pushes_the_level_down_even_if_throughput_would_rise():
    climber, windows = simulate(best=40, congest_above=10)
    assert climber.converged_level <= 10
    assert all(level <= 11 for level in settled_levels(windows))


def test_rare_congestion_does_not_move_the_level():
    climber = Climber(start=16, ceiling=64, from_profile=True, min_window=0.0)
    climber.phase = STEADY
    climber._best_level, climber._best_tput = 16, 16.0
    t = 0.0
    for i in range(40):
        t += 1 / 16
        climber.complete(t, congested=(i == 5))   # one dead host among 40 completions
    assert climber.level == 16


def test_fixed_mode_only_measures():
    climber, windows = simulate(best=12, start=7)
    fixed = Climber(start=7, ceiling=64, fixed=True, min_window=0.0)
    assert fixed.phase == FIXED
    t = 0.0
    for _ in range(200):
        t += 0.1
        window = fixed.complete(t, congested=True)
        if window:
            assert window.new_level == 7 and window.throughput > 0
    assert fixed.converged_level is None
    assert windows   # the adaptive one did produce windows


def test_windows_need_a_generation_and_a_minimum_length():
    climber = Climber(start=8, ceiling=64, min_window=1.0, min_events=4)
    assert all(climber.complete(0.01 * i) is None for i in range(1, 8))   # < level events
    assert climber.complete(0.5) is None                                   # < min_window
    window = climber.complete(1.0)
    assert window is not None and window.completions == 9 and window.throughput == 9.0


def test_same_observations_same_decisions():
    _, first = simulate(best=12, noise=0.3, seed=5)
    _, second = simulate(best=12, noise=0.3, seed=5)
    assert [(w.t, w.level, w.new_level) for w in first] == \
        [(w.t, w.level, w.new_level) for w in second]


def test_level_stays_within_one_and_ceiling():
    climber, windows = simulate(best=1, start=64, ceiling=64)
    assert all(1 <= w.new_level <= 64 for w in windows)
    assert climber.converged_level == 1


def test_first_window_is_the_ramp_up_and_decides_nothing():
    # Every item starts at once: the first window reads low (nothing had finished before).
    climber = Climber(start=10, ceiling=64, from_profile=True, min_window=0.0)
    window = None
    for i in range(10):
        window = climber.complete(1.0 + 0.01 * i) or window
    assert window is not None and window.settling and climber.level == 10


def test_profile_start_does_not_drift_from_run_to_run():
    """Each run starts where the one before converged (what the profile stores); short,
    noisy runs must not walk that start point away from the optimum."""
    for seed in range(1, 7):
        start, path = 12, []
        for run in range(8):
            climber, _ = simulate(best=12, n=200, start=start, from_profile=True, noise=0.2,
                                  seed=seed * 100 + run)
            start = climber.converged_level
            path.append(start)
        # Noise moves it a step or two at times; it must come back, not walk away.
        assert all(9 <= level <= 15 for level in path), (seed, path)
        assert sum(abs(level - 12) for level in path) / len(path) <= 1.5, (seed, path)
        assert 10 <= path[-1] <= 14, (seed, path)


def test_drained_windows_decide_nothing():
    climber = Climber(start=8, ceiling=64, from_profile=True, min_window=0.0)
    climber.phase, climber._best_level, climber._best_tput = STEADY, 8, 8.0
    climber.drain()
    t, windows = 0.0, []
    for i in range(40):
        t += 1.0                     # throughput collapses as the last items trickle in
        window = climber.complete(t)
        if window:
            windows.append(window)
    assert windows and all(w.settling and w.new_level == 8 for w in windows)
    assert climber.converged_level == 8


def test_settling_after_a_drop_waits_for_the_old_generation():
    climber = Climber(start=16, ceiling=64, min_window=0.0)
    t = 0.0
    for congested in (False, True):  # the ramp-up window, then one full of timeouts
        for _ in range(16):
            t += 0.1
            window = climber.complete(t, congested=congested)
    assert window is not None and climber.level == 12     # 16 -> 12, 16 still in flight
    closed = [climber.complete(t + 0.1 * i) for i in range(1, 17)]
    assert all(w is None for w in closed[:15]) and closed[15] is not None
    assert closed[15].settling


def test_grow_stops_at_the_knee():
    # Doubling 8 -> 16 past an optimum of 12 gains little: it must not go on to 32.
    for seed in (1, 2, 3):
        _, windows = simulate(best=12, n=600, noise=0.1, seed=seed)
        assert max(w.level for w in windows) <= 16, [w.level for w in windows]


def test_short_runs_with_a_profile_land_near_the_best_fixed_level():
    """Simulated wall time of 200 items: adaptive from a profile within 15% of the best
    fixed level (virtual time: deterministic, not a timing test)."""
    for best in (3, 8, 12):
        fixed = makespan(Climber(start=best, ceiling=64, fixed=True, min_window=0.0), best)
        adaptive = [makespan(Climber(start=best, ceiling=64, from_profile=True, min_window=0.0),
                             best, seed=seed) for seed in range(1, 6)]
        assert sorted(adaptive)[2] <= 1.15 * fixed, (best, fixed, adaptive)


def test_a_lower_level_that_is_no_worse_wins_and_the_search_keeps_going_down():
    # A flat curve (a service that serializes the work): fewer in flight do the same.
    climber = Climber(start=16, ceiling=64, from_profile=True, min_window=0.0)
    climber._settling = False
    climber.phase, climber._best_level, climber._best_tput = "fine", 16, 10.0
    climber._step, climber._tried, climber._direction = 2, {+1}, -1
    climber._set(14)
    climber._decide_fine(14, 10.0)           # no worse than 16
    assert climber._best_level == 14
    assert climber.level == 10                # next probe further down, in a doubled step
    climber._decide_fine(10, 9.0)            # worse: stays at 14 and narrows the step
    assert climber._best_level == 14 and climber._best_tput == 10.0
    assert climber._step == 2 and climber.level in (12, 16)
