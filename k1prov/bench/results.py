"""What a benchmark run measured, summarised and written down (JSON and CSV).

Pure data and files: no SSH, no Spark. `summarize` applies Spark-Perf's rule of
leaving the first trials out (JVM warm-up, JIT, first-touch of cached data) before
taking the median, minimum and maximum of each mode, scale factor, contention level
and phase. `contention_table` is `bench kmeans --contention`'s result: per level, scale
factor and mode, the medians, each spark-submit's wall time (which includes waiting for
resources) and the share the competing framework held meanwhile.
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

TRIAL_COLUMNS = ["mode", "scale_factor", "contention", "trial", "ignored", "train_s", "test_s", "cost"]
SUMMARY_COLUMNS = ["mode", "scale_factor", "contention", "phase", "trials", "median_s", "min_s", "max_s"]
SUBMIT_COLUMNS = ["mode", "scale_factor", "contention", "wall_s", "data_s", "held_start", "held_min",
                  "held_median", "outcome"]
CONTENTION_COLUMNS = ["contention", "scale_factor", "mode", "training_median_s", "test_median_s",
                      "wall_s", "held_start", "held_median", "outcome"]


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
    contention: float = 0.0   # the share of every agent a competing framework held (--contention)


@dataclass(frozen=True)
class PhaseSummary:
    mode: str
    scale_factor: float
    phase: str            # "training" or "test"
    trials: int           # how many trials the numbers are taken over
    median_s: float
    min_s: float
    max_s: float
    contention: float = 0.0


@dataclass(frozen=True)
class Skipped:
    mode: str
    reason: str


@dataclass(frozen=True)
class Failure:
    mode: str
    scale_factor: float
    reason: str
    contention: float = 0.0


@dataclass(frozen=True)
class Submit:
    """One spark-submit (every trial of one mode and scale factor at one contention level)."""
    mode: str
    scale_factor: float
    contention: float
    wall_s: float                      # the whole submit: JVM, waiting for resources, data, trials
    data_s: float | None = None        # SparkContext up -> data cached (waits for the first executors)
    held_start: float | None = None    # the competing framework's share when the submit started
    held_min: float | None = None      # ... its least while the submit ran
    held_median: float | None = None   # ... its median while the submit ran
    outcome: str = "ok"                # ok | failed | no resources (timed out without an executor)


def mark_ignored(trials: Iterable[Trial], ignore_first: int) -> list[Trial]:
    """The trials with `ignored` set on the first `ignore_first` of each mode and scale factor."""
    return [Trial(t.mode, t.scale_factor, t.trial, t.train_s, t.test_s, t.cost,
                  ignored=t.trial <= ignore_first, contention=t.contention) for t in trials]


def summarize(trials: Iterable[Trial]) -> list[PhaseSummary]:
    """Median, min and max per mode, scale factor, contention level and phase over the
    trials not ignored."""
    groups: dict[tuple[str, float, float], list[Trial]] = {}
    for t in trials:
        if not t.ignored:
            groups.setdefault((t.mode, t.scale_factor, t.contention), []).append(t)
    out: list[PhaseSummary] = []
    for (mode, scale, contention), group in sorted(groups.items()):
        for phase in PHASES:
            times = [t.train_s if phase == "training" else t.test_s for t in group]
            out.append(PhaseSummary(mode, scale, phase, len(times), statistics.median(times),
                                    min(times), max(times), contention=contention))
    return out


def contention_table(summaries: Iterable[PhaseSummary], submits: Iterable[Submit]) -> list[dict[str, Any]]:
    """One row per contention level, scale factor and mode (in that order): the training and
    test medians (None where the submit gave no trial), the submit's wall time and what the
    competing framework held."""
    medians = {(s.contention, s.scale_factor, s.mode, s.phase): s.median_s for s in summaries}
    rows = []
    for sub in sorted(submits, key=lambda x: (x.contention, x.scale_factor, x.mode)):
        key = (sub.contention, sub.scale_factor, sub.mode)
        rows.append({"contention": sub.contention, "scale_factor": sub.scale_factor, "mode": sub.mode,
                     "training_median_s": medians.get(key + ("training",)),
                     "test_median_s": medians.get(key + ("test",)),
                     "wall_s": sub.wall_s, "held_start": sub.held_start, "held_median": sub.held_median,
                     "outcome": sub.outcome})
    return rows


def faster_mode(rows: Iterable[dict[str, Any]], *, phase: str = "training_median_s") -> dict[tuple[float, float], str]:
    """Per (contention, scale factor): the mode with the lower median, or the only one that
    ran; "neither" when no mode ran. What the conclusion is read from (no judgement on ties)."""
    by_cell: dict[tuple[float, float], dict[str, float | None]] = {}
    for row in rows:
        by_cell.setdefault((row["contention"], row["scale_factor"]), {})[row["mode"]] = row[phase]
    verdict = {}
    for cell, times in by_cell.items():
        ran = {mode: t for mode, t in times.items() if t is not None}
        verdict[cell] = min(ran, key=ran.get) if ran else "neither"
    return verdict


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
    submits: list[Submit] = field(default_factory=list)
    contention: dict[str, Any] = field(default_factory=dict)     # the options, when --contention
    competitors: list[dict[str, Any]] = field(default_factory=list)   # one per level above 0

    @property
    def summaries(self) -> list[PhaseSummary]:
        return summarize(self.trials)

    @property
    def levels(self) -> list[float]:
        return sorted({s.contention for s in self.submits} | {t.contention for t in self.trials})

    def contention_rows(self) -> list[dict[str, Any]]:
        return contention_table(self.summaries, self.submits)

    def exit_code(self) -> int:
        """OK when every (mode, scale factor, level) ran, PARTIAL when some did, NOTHING when none did."""
        ran = {(t.mode, t.scale_factor, t.contention) for t in self.trials}
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
            "submits": [asdict(s) for s in self.submits],
            "contention": self.contention,
            "contention_table": self.contention_rows() if self.contention else [],
            "competitors": self.competitors,
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


def write_submits_csv(result: BenchResult, path: Path) -> Path:
    return _write_csv(path, SUBMIT_COLUMNS, (asdict(s) for s in result.submits))


def write_contention_csv(result: BenchResult, path: Path) -> Path:
    return _write_csv(path, CONTENTION_COLUMNS, result.contention_rows())
