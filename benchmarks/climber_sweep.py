"""The climber alone, on simulated workloads: how often it converges near a known optimum.

    .venv/bin/python benchmarks/climber_sweep.py

Uses the unit tests' simulator (tests/unit/test_fanout_climber.py: items whose service time
is 1.0 up to `best` in flight and grows quadratically beyond, so throughput peaks at `best`;
virtual time, deterministic per seed). For every optimum, start level, noise level and seed,
with a cold start and with a profile start, counts the runs whose converged level misses
the optimum by more than max(1, 15%). Then the wall time of short runs (200 and 1000
items) relative to the best fixed level, for cold and profile starts. Nothing here is
timed on the real clock.
"""
from __future__ import annotations

import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "unit"))

from test_fanout_climber import makespan, simulate  # noqa: E402

from k1prov.fanout.climber import Climber  # noqa: E402

OPTIMA = (1, 3, 5, 8, 12, 20, 30, 50)
STARTS = (1, 4, 40)
NOISES = (0.0, 0.2, 0.35)
SEEDS = range(1, 11)


def convergence() -> tuple[int, int, list]:
    misses, total, examples = 0, 0, []
    for best in OPTIMA:
        for start in STARTS:
            for noise in NOISES:
                for seed in SEEDS:
                    for from_profile in (False, True):
                        climber, _ = simulate(best=best, start=best if from_profile else start,
                                              noise=noise, seed=seed, from_profile=from_profile)
                        total += 1
                        if abs(climber.converged_level - best) > max(1, best * 0.15):
                            misses += 1
                            examples.append((best, start, noise, seed, from_profile,
                                             climber.converged_level))
    return misses, total, examples


def main() -> int:
    misses, total, examples = convergence()
    print(f"converged more than max(1, 15%) off the optimum: {misses} of {total} runs")
    for ex in examples[:10]:
        print("  best=%d start=%d noise=%.2f seed=%d profile=%s -> %d" % ex)
    print("\nshort runs, simulated wall time / best fixed level's (median of 5 seeds)")
    for n in (200, 1000):
        for best in (3, 8, 12):
            fixed = makespan(Climber(start=best, ceiling=64, fixed=True, min_window=0.0), best, n)
            cold = [makespan(Climber(start=4, ceiling=64, min_window=0.0), best, n, seed)
                    for seed in range(1, 6)]
            warm = [makespan(Climber(start=best, ceiling=64, from_profile=True, min_window=0.0),
                             best, n, seed) for seed in range(1, 6)]
            print(f"  n={n:<5} best={best:<3} cold start {statistics.median(cold) / fixed:.2f}  "
                  f"profile start {statistics.median(warm) / fixed:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
