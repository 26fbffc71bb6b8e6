"""Leaderboard pictures: a heatmap of differences to the reference and a forest plot of the
aggregate's difference, with each seed's run drawn beside its variant's interval.

Both draw on a given matplotlib Axes, so the same drawing makes the standalone PNGs and the
two-panel figure of `SweepResult.plot_leaderboard`.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only; a sweep may run with no display

import numpy as np  # noqa: E402
from matplotlib import pyplot as plt  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from .ranking import Ranking  # noqa: E402

BETTER, WORSE, NEUTRAL, MISSING = "#1a7f37", "#cf222e", "#57606a", "#d0d7de"


def variant_labels(ranking: Ranking, knobs: dict[str, str], width: int = 48) -> list[str]:
    """'trial-05-search: logit_transform=sine ...' per row, cut to `width` characters, over its
    seed count ('3 seeds', or '1 seed, items only' where training noise is not in the interval)."""
    labels = []
    for name, seeds, interval in ranking.frame[["variant", "seeds", "interval"]].itertuples(index=False):
        text = f"{name}: {knobs.get(name, '')}".rstrip(": ")
        text = text if len(text) <= width else text[: width - 1] + "…"
        count = f"{seeds} seed{'s' if seeds != 1 else ''}" + (", items only" if interval == "items only" else "")
        labels.append(f"{text}\n{count}")
    return labels


def draw_heatmap(ax: Axes, ranking: Ranking, labels: list[str], alpha: float) -> None:
    """Variants x benchmarks; colour = difference to the reference in points (x100) of the
    primary metric, mean over seeds; each cell also gives the variant's seed sd; significant
    cells (Holm) outlined and starred; missing cells grey."""
    frame, benchmarks = ranking.frame, list(ranking.benchmarks)
    diff = frame[[f"{b}_diff" for b in benchmarks]].to_numpy(dtype=float) * 100
    sig = frame[[f"{b}_sig" for b in benchmarks]].to_numpy()
    seed_sd = frame[[f"{b}_seed_sd" for b in benchmarks]].to_numpy(dtype=float) * 100
    limit = max(float(np.nanmax(np.abs(diff))) if np.isfinite(diff).any() else 0.0, 1.0)
    cmap = plt.get_cmap("RdBu").with_extremes(bad=MISSING)
    image = ax.imshow(np.ma.masked_invalid(diff), cmap=cmap, vmin=-limit, vmax=limit, aspect="auto")
    for (row, col), value in np.ndenumerate(diff):
        if np.isnan(value):
            ax.text(col, row, "n/a", ha="center", va="center", fontsize=8, color=NEUTRAL)
            continue
        mark = "*" if sig[row, col] else ""
        strong = abs(value) > 0.6 * limit
        spread = "" if np.isnan(seed_sd[row, col]) else f"\nsd {seed_sd[row, col]:.1f}"
        ax.text(col, row, f"{value:+.1f}{mark}{spread}", ha="center", va="center", fontsize=8,
                color="white" if strong else "black", fontweight="bold" if mark else "normal")  # fmt: skip
        if mark:
            ax.add_patch(plt.Rectangle((col - 0.5, row - 0.5), 1, 1, fill=False, edgecolor="black", linewidth=1.5))
    ax.set_xticks(range(len(benchmarks)), benchmarks, rotation=35, ha="right", fontsize=9)
    ax.set_yticks(range(len(labels)), labels, fontsize=9)
    ax.set_title(f"Difference to {ranking.reference} (primary metric, mean over seeds, points; sd: seed sd)", fontsize=11)
    colorbar = ax.figure.colorbar(image, ax=ax, fraction=0.04, pad=0.02)
    colorbar.set_label(f"variant − {ranking.reference} (x100)")
    ax.legend(
        handles=[Patch(facecolor="white", edgecolor="black", linewidth=1.5, label=f"* significant (Holm, α={alpha:g})"),
                 Patch(facecolor=MISSING, label="n/a: benchmark missing")],  # fmt: skip
        loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2, fontsize=8, frameon=False,
    )  # fmt: skip


def draw_forest(ax: Axes, ranking: Ranking, labels: list[str], alpha: float, level: float) -> None:
    """Per variant, the aggregate's difference to the reference in points with its interval,
    and each seed's own aggregate (hollow dots) against the reference's mean over seeds."""
    frame = ranking.frame
    y = np.arange(len(frame))
    point = frame["aggregate_diff"].to_numpy(dtype=float) * 100
    low, high = frame["aggregate_diff_lo"].to_numpy(dtype=float) * 100, frame["aggregate_diff_hi"].to_numpy(dtype=float) * 100
    sig = frame["aggregate_sig"].to_numpy()
    colours = [BETTER if s > 0 else WORSE if s < 0 else NEUTRAL for s in sig]
    reference_mean = float(frame.loc[frame["variant"] == ranking.reference, "aggregate"].iloc[0])
    ax.axvline(0.0, color="black", linestyle="--", linewidth=1)
    spread = [*low, *high]
    better = frame["aggregate_p_better"].to_numpy(dtype=float)
    for yi, (name, v, lo, hi, colour, pb) in enumerate(zip(frame["variant"], point, low, high, colours, better)):
        seeds = (np.array(ranking.seed_aggregates.get(name, ())) - reference_mean) * 100
        spread += list(seeds)
        ax.scatter(seeds, np.full(len(seeds), yi + 0.18), s=18, facecolors="none", edgecolors=colour, linewidths=1, zorder=3)
        if np.isnan(v):
            continue
        if name == ranking.reference:  # compared with itself: no interval, its seeds show its spread
            ax.plot(v, yi, "o", color="black", markersize=6)
            ax.annotate("reference", (np.max(seeds, initial=v), yi), xytext=(6, 0), textcoords="offset points", va="center", fontsize=8)
            continue
        ax.errorbar(v, yi, xerr=[[v - lo], [hi - v]], fmt="o", color=colour, capsize=4, markersize=6, linewidth=2)
        # right of the interval, its seeds and the reference line (which it would cross when worse)
        ax.annotate(f"{v:+.2f} [{lo:+.2f}, {hi:+.2f}]  P(> ref) {pb:.2f}", (max(hi, np.max(seeds, initial=hi), 0.0), yi),
                    xytext=(6, 0), textcoords="offset points", va="center", fontsize=8)  # fmt: skip
    ax.set_yticks(y, labels, fontsize=9)
    ax.set_ylim(len(frame) - 0.5, -0.5)  # best at the top, as in the table
    finite = np.array([x for x in spread if np.isfinite(x)] or [0.0])
    span = max(float(finite.max() - finite.min()), 1.0)
    ax.set_xlim(finite.min() - 0.1 * span, finite.max() + 0.7 * span)
    ax.set_xlabel(f"mean primary metric over benchmarks, variant − {ranking.reference} (points)")
    ax.set_title(f"Aggregate difference with {level:.0%} interval (seeds and items)", fontsize=11)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(
        handles=[
            Line2D([], [], color=BETTER, marker="o", label=f"better than reference (p<{alpha:g})"),
            Line2D([], [], color=WORSE, marker="o", label=f"worse than reference (p<{alpha:g})"),
            Line2D([], [], color=NEUTRAL, marker="o", label="not significant"),
            Line2D([], [], color=NEUTRAL, marker="o", markerfacecolor="none", linestyle="", label="one seed's run"),
            Line2D([], [], color="black", linestyle="--", label=f"reference ({ranking.reference}), mean over seeds"),
        ],
        loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, fontsize=8, frameon=False,
    )  # fmt: skip


def save_plot(path: str, ranking: Ranking, labels: list[str], alpha: float, level: float,
              panels: tuple[str, ...] = ("heatmap", "forest")) -> None:  # fmt: skip
    """Writes a PNG of the named panels side by side (`heatmap`, `forest`)."""
    widths = {"heatmap": 4 + 0.9 * len(ranking.benchmarks), "forest": 10.0}
    fig, axes = plt.subplots(
        1, len(panels), figsize=(sum(widths[p] for p in panels), 2.4 + 0.6 * len(labels)), layout="constrained",
        width_ratios=[widths[p] for p in panels], squeeze=False,
    )  # fmt: skip
    for ax, panel in zip(axes[0], panels):
        if panel == "heatmap":
            draw_heatmap(ax, ranking, labels, alpha)
        else:
            draw_forest(ax, ranking, labels, alpha, level)
    fig.savefig(path, dpi=130)
    plt.close(fig)
