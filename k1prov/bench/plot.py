"""The PNG figure of a K-means run, drawn like the original testbed's: time against
scale factor (log axis), one line per mode and phase, the median with min-max bars."""
from __future__ import annotations

from pathlib import Path

from k1prov.bench.results import PHASES, BenchResult

# Same colour per mode, solid for training and dashed for test, so that a reader can
# pair the two phases of one mode at a glance.
_STYLE = {"training": "-", "test": "--"}
_MARKER = {"training": "o", "test": "s"}


def plot_result(result: BenchResult, path: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")  # no display on a build host or in CI
    import matplotlib.pyplot as plt

    summaries = result.summaries
    fig, ax = plt.subplots(figsize=(7.5, 5.0), dpi=100)
    try:
        modes = sorted({s.mode for s in summaries})
        colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        for i, mode in enumerate(modes):
            for phase in PHASES:
                points = sorted((s for s in summaries if s.mode == mode and s.phase == phase),
                                key=lambda s: s.scale_factor)
                xs = [s.scale_factor for s in points]
                ys = [s.median_s for s in points]
                errors = [[s.median_s - s.min_s for s in points], [s.max_s - s.median_s for s in points]]
                ax.errorbar(xs, ys, yerr=errors, label=f"{mode} {phase}", color=colours[i % len(colours)],
                            linestyle=_STYLE[phase], marker=_MARKER[phase], capsize=3)
        ax.set_xscale("log")
        ax.set_xlabel("scale factor")
        ax.set_ylabel("time (s), median of trials, bars min-max")
        ax.set_title(f"K-means (Spark-Perf workload) on {result.cluster} ({result.manager})")
        ax.grid(True, which="both", alpha=0.3)
        notes = [f"{s.mode}: skipped ({s.reason})" for s in result.skipped]
        notes += [f"{f.mode} s={f.scale_factor:g}: failed" for f in result.failures]
        if not summaries:
            notes.insert(0, "no measurements")
        if summaries:
            ax.legend(fontsize=8, loc="upper left")
        # Skipped modes and failures go under the axes, where they cannot hide a line.
        footer = 0.035 * len(notes)
        if notes:
            fig.text(0.01, 0.01, "\n".join(notes), fontsize=7, va="bottom", ha="left", color="dimgray")
        fig.tight_layout(rect=(0, footer, 1, 1))
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)
    return path
