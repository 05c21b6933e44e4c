"""What a benchmark run measured, summarised and written down (JSON and CSV).

Pure data and files: no SSH, no Spark. `summarize` applies Spark-Perf's rule of
leaving the first trials out (JVM warm-up, JIT, first-touch of cached data) before
taking the median, minimum and maximum of each mode, scale factor and phase.
"""
from __future__ import annotations

import csv
import json
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

from k1prov.errors import ConfigError
from k1prov.verb_report import exit_code

PHASES = ("training", "test")
# Spark-Perf runs 10 trials and ignores the first 2; shorter runs keep every trial,
# since dropping 2 of 3 would leave one measurement to summarise.
SPARK_PERF_TRIALS = 10
SPARK_PERF_IGNORED = 2

TRIAL_COLUMNS = ["mode", "scale_factor", "trial", "ignored", "train_s", "test_s", "cost"]
SUMMARY_COLUMNS = ["mode", "scale_factor", "phase", "trials", "median_s", "min_s", "max_s"]


def default_ignored(trials: int) -> int:
    """How many leading trials to leave out: 2 for Spark-Perf's 10 (or more), else 0."""
    return SPARK_PERF_IGNORED if trials >= SPARK_PERF_TRIALS else 0


def check_trials(trials: int, ignore_first: int | None) -> int:
    """The number of trials to ignore, checked against the number of trials."""
    if trials < 1:
        raise ConfigError(f"--trials must be at least 1, got {trials}")
    ignored = default_ignored(trials) if ignore_first is None else ignore_first
    if not 0 <= ignored < trials:
        raise ConfigError(f"--ignore-first {ignored} must be between 0 and trials-1 ({trials - 1}): "
                          "at least one trial has to count")
    return ignored


@dataclass(frozen=True)
class Trial:
    mode: str
    scale_factor: float
    trial: int            # 1-based, in the order the job ran them
    train_s: float
    test_s: float
    cost: float
    ignored: bool = False


@dataclass(frozen=True)
class PhaseSummary:
    mode: str
    scale_factor: float
    phase: str            # "training" or "test"
    trials: int           # how many trials the numbers are taken over
    median_s: float
    min_s: float
    max_s: float


@dataclass(frozen=True)
class Skipped:
    mode: str
    reason: str


@dataclass(frozen=True)
class Failure:
    mode: str
    scale_factor: float
    reason: str


def mark_ignored(trials: Iterable[Trial], ignore_first: int) -> list[Trial]:
    """The trials with `ignored` set on the first `ignore_first` of each mode and scale factor."""
    return [Trial(t.mode, t.scale_factor, t.trial, t.train_s, t.test_s, t.cost,
                  ignored=t.trial <= ignore_first) for t in trials]


def summarize(trials: Iterable[Trial]) -> list[PhaseSummary]:
    """Median, min and max per mode, scale factor and phase over the trials not ignored."""
    groups: dict[tuple[str, float], list[Trial]] = {}
    for t in trials:
        if not t.ignored:
            groups.setdefault((t.mode, t.scale_factor), []).append(t)
    out: list[PhaseSummary] = []
    for (mode, scale), group in sorted(groups.items()):
        for phase in PHASES:
            times = [t.train_s if phase == "training" else t.test_s for t in group]
            out.append(PhaseSummary(mode, scale, phase, len(times), statistics.median(times),
                                    min(times), max(times)))
    return out


@dataclass
class BenchResult:
    """One `bench kmeans` run: where it ran, what it measured, what it could not run."""

    cluster: str
    manager: str                     # standalone | mesos
    master_url: str
    submit_host: str
    run_dir: Path
    trials_per_run: int
    ignore_first: int
    workloads: list[dict[str, Any]] = field(default_factory=list)
    spark_conf: dict[str, dict[str, str]] = field(default_factory=dict)   # per mode
    trials: list[Trial] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)

    @property
    def summaries(self) -> list[PhaseSummary]:
        return summarize(self.trials)

    def exit_code(self) -> int:
        """OK when every (mode, scale factor) ran, PARTIAL when some did, NOTHING when none did."""
        ran = {(t.mode, t.scale_factor) for t in self.trials}
        return exit_code(succeeded=len(ran), failed=len(self.failures))

    def to_dict(self) -> dict[str, Any]:
        return {
            "benchmark": "kmeans",
            "cluster": self.cluster,
            "manager": self.manager,
            "master_url": self.master_url,
            "submit_host": self.submit_host,
            "run_dir": str(self.run_dir),
            "trials_per_run": self.trials_per_run,
            "ignore_first": self.ignore_first,
            "workloads": self.workloads,
            "spark_conf": self.spark_conf,
            "summary": [asdict(s) for s in self.summaries],
            "trials": [asdict(t) for t in self.trials],
            "skipped": [asdict(s) for s in self.skipped],
            "failures": [asdict(f) for f in self.failures],
            "files": self.files,
        }


def write_json(result: BenchResult, path: Path) -> Path:
    path.write_text(json.dumps(result.to_dict(), indent=2, sort_keys=True) + "\n")
    return path


def _write_csv(path: Path, columns: list[str], rows: Iterable[dict[str, Any]]) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row[c] for c in columns})
    return path


def write_trials_csv(result: BenchResult, path: Path) -> Path:
    return _write_csv(path, TRIAL_COLUMNS, (asdict(t) for t in result.trials))


def write_summary_csv(result: BenchResult, path: Path) -> Path:
    return _write_csv(path, SUMMARY_COLUMNS, (asdict(s) for s in result.summaries))
