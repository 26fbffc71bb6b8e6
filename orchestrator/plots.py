"""Leaderboard pictures: a heatmap of differences to the reference and a forest plot of aggregates.

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
    """'trial-05-search: logit_transform=sine ...' per row, cut to `width` characters."""
    labels = []
    for name in ranking.frame["variant"]:
        text = f"{name}: {knobs.get(name, '')}".rstrip(": ")
        labels.append(text if len(text) <= width else text[: width - 1] + "…")
    return labels


def draw_heatmap(ax: Axes, ranking: Ranking, labels: list[str], alpha: float) -> None:
    """Variants x benchmarks; colour = difference to the reference in points (x100) of the
    primary metric; significant cells (Holm) outlined and starred; missing cells grey."""
    frame, benchmarks = ranking.frame, list(ranking.benchmarks)
    diff = frame[[f"{b}_diff" for b in benchmarks]].to_numpy(dtype=float) * 100
    sig = frame[[f"{b}_sig" for b in benchmarks]].to_numpy()
    limit = max(float(np.nanmax(np.abs(diff))) if np.isfinite(diff).any() else 0.0, 1.0)
    cmap = plt.get_cmap("RdBu").with_extremes(bad=MISSING)
    image = ax.imshow(np.ma.masked_invalid(diff), cmap=cmap, vmin=-limit, vmax=limit, aspect="auto")
    for (row, col), value in np.ndenumerate(diff):
        if np.isnan(value):
            ax.text(col, row, "n/a", ha="center", va="center", fontsize=8, color=NEUTRAL)
            continue
        mark = "*" if sig[row, col] else ""
        strong = abs(value) > 0.6 * limit
        ax.text(col, row, f"{value:+.1f}{mark}", ha="center", va="center", fontsize=8,
                color="white" if strong else "black", fontweight="bold" if mark else "normal")  # fmt: skip
        if mark:
            ax.add_patch(plt.Rectangle((col - 0.5, row - 0.5), 1, 1, fill=False, edgecolor="black", linewidth=1.5))
    ax.set_xticks(range(len(benchmarks)), benchmarks, rotation=35, ha="right", fontsize=9)
    ax.set_yticks(range(len(labels)), labels, fontsize=9)
    ax.set_title(f"Difference to {ranking.reference} (primary metric, points)", fontsize=11)
    colorbar = ax.figure.colorbar(image, ax=ax, fraction=0.04, pad=0.02)
    colorbar.set_label(f"variant − {ranking.reference} (x100)")
    ax.legend(
        handles=[Patch(facecolor="white", edgecolor="black", linewidth=1.5, label=f"* significant (Holm, α={alpha:g})"),
                 Patch(facecolor=MISSING, label="n/a: benchmark missing")],  # fmt: skip
        loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2, fontsize=8, frameon=False,
    )  # fmt: skip


def draw_forest(ax: Axes, ranking: Ranking, labels: list[str], alpha: float, level: float) -> None:
    """Aggregate (mean of metric / reference's) per variant with its bootstrap interval."""
    frame = ranking.frame
    y = np.arange(len(frame))
    point = frame["aggregate"].to_numpy(dtype=float)
    low, high = frame["aggregate_lo"].to_numpy(dtype=float), frame["aggregate_hi"].to_numpy(dtype=float)
    p = frame["aggregate_p"].to_numpy(dtype=float)
    colours = [BETTER if pv < alpha and v > 1 else WORSE if pv < alpha and v < 1 else NEUTRAL for pv, v in zip(p, point)]
    ax.axvline(1.0, color="black", linestyle="--", linewidth=1)
    for yi, (v, lo, hi, colour) in enumerate(zip(point, low, high, colours)):
        ax.errorbar(v, yi, xerr=[[v - lo], [hi - v]], fmt="o", color=colour, capsize=4, markersize=6, linewidth=2)
        ax.annotate(f"{v:.3f} [{lo:.3f}, {hi:.3f}]", (hi, yi), xytext=(6, 0), textcoords="offset points",
                    va="center", fontsize=8)  # fmt: skip
    ax.set_yticks(y, labels, fontsize=9)
    ax.set_ylim(len(frame) - 0.5, -0.5)  # best at the top, as in the table
    span = max(np.nanmax(high) - np.nanmin(low) if np.isfinite(high).any() else 0.0, 0.05)
    ax.set_xlim(np.nanmin(low) - 0.1 * span, np.nanmax(high) + 0.45 * span)
    ax.set_xlabel(f"aggregate: mean over benchmarks of metric / {ranking.reference}'s")
    ax.set_title(f"Aggregate with {level:.0%} paired-bootstrap interval", fontsize=11)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(
        handles=[
            Line2D([], [], color=BETTER, marker="o", label=f"better than reference (p<{alpha:g})"),
            Line2D([], [], color=WORSE, marker="o", label=f"worse than reference (p<{alpha:g})"),
            Line2D([], [], color=NEUTRAL, marker="o", label="not significant"),
            Line2D([], [], color="black", linestyle="--", label=f"reference ({ranking.reference}) = 1"),
        ],
        loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, fontsize=8, frameon=False,
    )  # fmt: skip


def save_plot(path: str, ranking: Ranking, labels: list[str], alpha: float, level: float,
              panels: tuple[str, ...] = ("heatmap", "forest")) -> None:  # fmt: skip
    """Writes a PNG of the named panels side by side (`heatmap`, `forest`)."""
    widths = {"heatmap": 4 + 0.9 * len(ranking.benchmarks), "forest": 10.0}
    fig, axes = plt.subplots(
        1, len(panels), figsize=(sum(widths[p] for p in panels), 2.4 + 0.45 * len(labels)), layout="constrained",
        width_ratios=[widths[p] for p in panels], squeeze=False,
    )  # fmt: skip
    for ax, panel in zip(axes[0], panels):
        if panel == "heatmap":
            draw_heatmap(ax, ranking, labels, alpha)
        else:
            draw_forest(ax, ranking, labels, alpha, level)
    fig.savefig(path, dpi=130)
    plt.close(fig)
