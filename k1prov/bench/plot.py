"""The PNG figure of a K-means run, laid out like the original testbed's: scale factor
on the x axis, the modes (coarse- and fine-grained) side by side as bars at each scale
factor, training time and test time in two panels; bars are medians, whiskers min-max.
With contention (`--contention`) the x axis is the contention level (and scale factor),
and a third panel shows each spark-submit's wall time, which includes waiting for
resources; a mode that gave no trial at a level is marked "x" on its axis."""
from __future__ import annotations

from pathlib import Path

from k1prov.bench.results import PHASES, BenchResult


def categories(result: BenchResult) -> list[tuple[float, float]]:
    """The x axis: (contention level, scale factor) pairs, levels first."""
    cells = {(s.contention, s.scale_factor) for s in result.summaries}
    cells |= {(f.contention, f.scale_factor) for f in result.failures}
    cells |= {(s.contention, s.scale_factor) for s in result.submits}
    return sorted(cells)


def category_label(cell: tuple[float, float], *, contended: bool, scales: int) -> str:
    level, scale = cell
    if not contended:
        return f"{scale:g}"
    return f"{level:g}" + (f"\ns={scale:g}" if scales > 1 else "")


def plot_result(result: BenchResult, path: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")  # no display on a build host or in CI
    import matplotlib.pyplot as plt

    summaries = result.summaries
    contended = bool(result.contention)
    panels = list(PHASES) + (["wall"] if contended else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(5.0 * len(panels), 4.8), dpi=100)
    try:
        modes = sorted({s.mode for s in summaries} | {s.mode for s in result.submits})
        cells = categories(result)
        scales = len({scale for _, scale in cells})
        colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        width = 0.8 / max(1, len(modes))
        for ax, phase in zip(axes, panels):
            for i, mode in enumerate(modes):
                offset = (i - (len(modes) - 1) / 2) * width
                if phase == "wall":
                    found = {(s.contention, s.scale_factor): s.wall_s for s in result.submits
                             if s.mode == mode and s.outcome == "ok"}
                    xs = [j + offset for j, cell in enumerate(cells) if cell in found]
                    ax.bar(xs, [found[c] for c in cells if c in found], width=width, label=mode,
                           color=colours[i % len(colours)])
                else:
                    by_cell = {(s.contention, s.scale_factor): s for s in summaries
                               if s.mode == mode and s.phase == phase}
                    found = by_cell
                    xs = [j + offset for j, cell in enumerate(cells) if cell in by_cell]
                    points = [by_cell[cell] for cell in cells if cell in by_cell]
                    errors = [[s.median_s - s.min_s for s in points], [s.max_s - s.median_s for s in points]]
                    ax.bar(xs, [s.median_s for s in points], width=width, yerr=errors, capsize=3,
                           label=mode, color=colours[i % len(colours)])
                for j, cell in enumerate(cells):
                    if cell not in found:
                        ax.annotate("x", (j + offset, 0), xytext=(0, 2), textcoords="offset points",
                                    ha="center", va="bottom", color=colours[i % len(colours)], fontsize=11,
                                    fontweight="bold")
            ax.set_xticks(range(len(cells)), [category_label(c, contended=contended, scales=scales) for c in cells])
            ax.set_xlabel("contention level (share of every agent a competing framework holds)"
                          if contended else "scale factor", fontsize=8 if contended else 10)
            if phase == "wall":
                ax.set_ylabel("spark-submit wall time (s), incl. waiting")
                ax.set_title("whole submit (JVM, resources, data, trials)", fontsize=10)
            else:
                ax.set_ylabel(f"{phase} time (s), median, bars min-max")
                ax.set_title(f"{phase}", fontsize=10)
            ax.grid(True, axis="y", alpha=0.3)
            if summaries or result.submits:
                ax.legend(fontsize=8, loc="best" if contended else "upper left")
        title = f"K-means (Spark-Perf workload) on {result.cluster} ({result.manager})"
        if contended:
            every = result.contention.get("release_every")
            slots = result.contention.get("slots_per_agent")
            title += (f"\nagainst a competing framework (tasks of 1/{slots} agent, one ending every {every:g} s, "
                      f"taken back when offered); x: no result" if every and slots
                      else "; x: no result (did not run or gave no trial)")
        fig.suptitle(title, fontsize=11)
        notes = [f"{s.mode}: skipped ({s.reason})" for s in result.skipped]
        notes += [f"{f.mode} s={f.scale_factor:g}" + (f" c={f.contention:g}" if contended else "")
                  + ": " + ("failed" if not contended else f.reason[:110]) for f in result.failures]
        if not summaries:
            notes.insert(0, "no measurements")
        # Skipped modes and failures go under the axes, where they cannot hide a bar.
        footer = min(0.035 * len(notes), 0.4)
        if notes:
            fig.text(0.01, 0.01, "\n".join(notes), fontsize=7, va="bottom", ha="left", color="dimgray")
        fig.tight_layout(rect=(0, footer, 1, 1))
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)
    return path
