"""Leaderboard pictures: a heatmap of differences to the reference with each cell's verdict, and
a forest plot of the aggregate's difference with its interval, each common seed's paired
difference as a dot, and the equivalence band.

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

BETTER, WORSE, NEUTRAL, EQUIVALENT, MISSING = "#1a7f37", "#cf222e", "#57606a", "#0969da", "#d0d7de"
SYMBOLS = {"better": "▲", "worse": "▼", "equivalent": "≈"}  # undecided: none
COLOURS = {"better": BETTER, "worse": WORSE, "equivalent": EQUIVALENT}


def variant_labels(ranking: Ranking, knobs: dict[str, str], width: int = 48) -> list[str]:
    """'trial-05-search: logit_transform=sine ...' per row, cut to `width` characters, over its
    seed count and pairing ('3 seeds, paired', '3 seeds, unpaired', '1 seed, items only')."""
    labels = []
    for name, seeds, pairing in ranking.frame[["variant", "seeds", "pairing"]].itertuples(index=False):
        text = f"{name}: {knobs.get(name, '')}".rstrip(": ")
        text = text if len(text) <= width else text[: width - 1] + "…"
        how = "" if name == ranking.reference or not pairing else f", {pairing}"
        count = f"{seeds} seed{'s' if seeds != 1 else ''}{how}"
        labels.append(f"{text}\n{count}")
    return labels


def draw_heatmap(ax: Axes, ranking: Ranking, labels: list[str], alpha: float, margin_pts: float) -> None:
    """Variants x benchmarks; colour = difference to the reference in points (x100) of the
    primary metric (paired: mean over common seeds); each cell also gives its verdict (▲ ▼
    significant after Holm, outlined; ≈ equivalent within the margin) and the variant's seed
    sd; missing cells grey."""
    frame, benchmarks = ranking.frame, list(ranking.benchmarks)
    diff = frame[[f"{b}_diff" for b in benchmarks]].to_numpy(dtype=float) * 100
    sig = frame[[f"{b}_sig" for b in benchmarks]].to_numpy()
    verdicts = frame[[f"{b}_verdict" for b in benchmarks]].to_numpy()
    seed_sd = frame[[f"{b}_seed_sd" for b in benchmarks]].to_numpy(dtype=float) * 100
    limit = max(float(np.nanmax(np.abs(diff))) if np.isfinite(diff).any() else 0.0, 1.0)
    cmap = plt.get_cmap("RdBu").with_extremes(bad=MISSING)
    image = ax.imshow(np.ma.masked_invalid(diff), cmap=cmap, vmin=-limit, vmax=limit, aspect="auto")
    for (row, col), value in np.ndenumerate(diff):
        if np.isnan(value):
            ax.text(col, row, "n/a", ha="center", va="center", fontsize=8, color=NEUTRAL)
            continue
        mark = SYMBOLS.get(verdicts[row, col], "")
        strong = abs(value) > 0.6 * limit
        spread = "" if np.isnan(seed_sd[row, col]) else f"\nsd {seed_sd[row, col]:.1f}"
        ax.text(col, row, f"{value:+.1f}{mark}{spread}", ha="center", va="center", fontsize=8,
                color="white" if strong else "black", fontweight="bold" if sig[row, col] else "normal")  # fmt: skip
        if sig[row, col]:
            ax.add_patch(plt.Rectangle((col - 0.5, row - 0.5), 1, 1, fill=False, edgecolor="black", linewidth=1.5))
    ax.set_xticks(range(len(benchmarks)), benchmarks, rotation=35, ha="right", fontsize=9)
    ax.set_yticks(range(len(labels)), labels, fontsize=9)
    ax.set_title(f"Difference to {ranking.reference} (primary metric, points, paired by seed; sd: seed sd)", fontsize=11)
    colorbar = ax.figure.colorbar(image, ax=ax, fraction=0.04, pad=0.02)
    colorbar.set_label(f"variant − {ranking.reference} (x100)")
    ax.legend(
        handles=[Patch(facecolor="white", edgecolor="black", linewidth=1.5, label=f"▲/▼ significant (Holm, α={alpha:g})"),
                 Patch(facecolor="white", edgecolor="white", label=f"≈ equivalent (within ±{margin_pts:g} pts)"),
                 Patch(facecolor=MISSING, label="n/a: benchmark missing")],  # fmt: skip
        loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=3, fontsize=8, frameon=False,
    )  # fmt: skip


def draw_forest(ax: Axes, ranking: Ranking, labels: list[str], alpha: float, level: float, margin_pts: float) -> None:
    """Per variant, the aggregate's difference to the reference in points with its interval,
    coloured by verdict; each common seed's paired difference as a hollow dot (unpaired rows:
    each seed against the reference's mean); the shaded ±margin band is "equivalent"."""
    frame = ranking.frame
    y = np.arange(len(frame))
    point = frame["aggregate_diff"].to_numpy(dtype=float) * 100
    low, high = frame["aggregate_diff_lo"].to_numpy(dtype=float) * 100, frame["aggregate_diff_hi"].to_numpy(dtype=float) * 100
    colours = [COLOURS.get(v, NEUTRAL) for v in frame["aggregate_verdict"]]
    ax.axvspan(-margin_pts, margin_pts, color=EQUIVALENT, alpha=0.08, zorder=0)
    ax.axvline(0.0, color="black", linestyle="--", linewidth=1)
    spread = [*low, *high, -margin_pts, margin_pts]
    rows = zip(frame["variant"], point, low, high, colours, frame["aggregate_verdict"], frame["aggregate_mde_pts"], frame["pairing"])
    for yi, (name, v, lo, hi, colour, verdict, mde, pairing) in enumerate(rows):
        seeds = np.array(ranking.seed_differences.get(name, ())) * 100
        spread += list(seeds)
        ax.scatter(seeds, np.full(len(seeds), yi + 0.2), s=18, facecolors="none", edgecolors=colour, linewidths=1, zorder=3)
        if np.isnan(v):
            continue
        if name == ranking.reference:  # compared with itself: no interval, its seeds show its spread
            ax.plot(0.0, yi, "o", color="black", markersize=6)
            ax.annotate("reference (dots: its seeds around its mean)", (np.max(seeds, initial=0.0), yi), xytext=(6, 0),
                        textcoords="offset points", va="center", fontsize=8)  # fmt: skip
            continue
        ax.errorbar(v, yi, xerr=[[v - lo], [hi - v]], fmt="o", color=colour, capsize=4, markersize=6, linewidth=2)
        # right of the interval, its seeds and the band (which it would cross when worse)
        text = f"{v:+.2f} [{lo:+.2f}, {hi:+.2f}] {SYMBOLS.get(verdict, '')} {verdict}, MDE {mde:.1f}".replace("  ", " ") + (
            "" if pairing == "paired" else f" ({pairing})")
        ax.annotate(text, (max(hi, np.max(seeds, initial=hi), margin_pts), yi), xytext=(6, 0), textcoords="offset points",
                    va="center", fontsize=8)  # fmt: skip
    ax.set_yticks(y, labels, fontsize=9)
    ax.set_ylim(len(frame) - 0.5, -0.5)  # best at the top, as in the table
    finite = np.array([x for x in spread if np.isfinite(x)] or [0.0])
    span = max(float(finite.max() - finite.min()), 1.0)
    ax.set_xlim(finite.min() - 0.1 * span, finite.max() + 0.9 * span)
    ax.set_xlabel(f"mean primary metric over benchmarks, variant − {ranking.reference} (points)")
    ax.set_title(f"Aggregate difference, paired by seed, with {level:.0%} interval", fontsize=11)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(
        handles=[
            Line2D([], [], color=BETTER, marker="o", label=f"▲ better (p<{alpha:g})"),
            Line2D([], [], color=WORSE, marker="o", label=f"▼ worse (p<{alpha:g})"),
            Line2D([], [], color=EQUIVALENT, marker="o", label=f"≈ equivalent (interval within ±{margin_pts:g})"),
            Line2D([], [], color=NEUTRAL, marker="o", label="undecided"),
            Line2D([], [], color=NEUTRAL, marker="o", markerfacecolor="none", linestyle="", label="one common seed's difference"),
            Patch(facecolor=EQUIVALENT, alpha=0.15, label=f"±{margin_pts:g} pts: equivalence margin"),
        ],
        loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3, fontsize=8, frameon=False,
    )  # fmt: skip


def save_plot(path: str, ranking: Ranking, labels: list[str], alpha: float, level: float, margin_pts: float,
              panels: tuple[str, ...] = ("heatmap", "forest")) -> None:  # fmt: skip
    """Writes a PNG of the named panels side by side (`heatmap`, `forest`)."""
    widths = {"heatmap": 4 + 0.9 * len(ranking.benchmarks), "forest": 11.0}
    fig, axes = plt.subplots(
        1, len(panels), figsize=(sum(widths[p] for p in panels), 2.6 + 0.6 * len(labels)), layout="constrained",
        width_ratios=[widths[p] for p in panels], squeeze=False,
    )  # fmt: skip
    for ax, panel in zip(axes[0], panels):
        if panel == "heatmap":
            draw_heatmap(ax, ranking, labels, alpha, margin_pts)
        else:
            draw_forest(ax, ranking, labels, alpha, level, margin_pts)
    fig.savefig(path, dpi=130)
    plt.close(fig)
