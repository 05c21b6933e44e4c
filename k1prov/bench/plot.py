"""The PNG figure of a K-means run, laid out like the original testbed's: scale factor
on the x axis, the modes (coarse- and fine-grained) side by side as bars at each scale
factor, training time and test time in two panels; bars are medians, whiskers min-max."""
from __future__ import annotations

from pathlib import Path

from k1prov.bench.results import PHASES, BenchResult


def plot_result(result: BenchResult, path: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")  # no display on a build host or in CI
    import matplotlib.pyplot as plt

    summaries = result.summaries
    fig, axes = plt.subplots(1, len(PHASES), figsize=(10.0, 4.8), dpi=100)
    try:
        modes = sorted({s.mode for s in summaries})
        scales = sorted({s.scale_factor for s in summaries})
        colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        width = 0.8 / max(1, len(modes))
        for ax, phase in zip(axes, PHASES):
            for i, mode in enumerate(modes):
                found = {s.scale_factor: s for s in summaries if s.mode == mode and s.phase == phase}
                xs = [j + (i - (len(modes) - 1) / 2) * width for j, scale in enumerate(scales) if scale in found]
                points = [found[scale] for scale in scales if scale in found]
                errors = [[s.median_s - s.min_s for s in points], [s.max_s - s.median_s for s in points]]
                ax.bar(xs, [s.median_s for s in points], width=width, yerr=errors, capsize=3,
                       label=mode, color=colours[i % len(colours)])
            ax.set_xticks(range(len(scales)), [f"{s:g}" for s in scales])
            ax.set_xlabel("scale factor")
            ax.set_ylabel(f"{phase} time (s), median, bars min-max")
            ax.set_title(f"{phase}", fontsize=10)
            ax.grid(True, axis="y", alpha=0.3)
            if summaries:
                ax.legend(fontsize=8, loc="upper left")
        fig.suptitle(f"K-means (Spark-Perf workload) on {result.cluster} ({result.manager})", fontsize=11)
        notes = [f"{s.mode}: skipped ({s.reason})" for s in result.skipped]
        notes += [f"{f.mode} s={f.scale_factor:g}: failed" for f in result.failures]
        if not summaries:
            notes.insert(0, "no measurements")
        # Skipped modes and failures go under the axes, where they cannot hide a bar.
        footer = 0.035 * len(notes)
        if notes:
            fig.text(0.01, 0.01, "\n".join(notes), fontsize=7, va="bottom", ha="left", color="dimgray")
        fig.tight_layout(rect=(0, footer, 1, 1))
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)
    return path
