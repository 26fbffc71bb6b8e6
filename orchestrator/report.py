"""The leaderboard as people read it: console table, CSV, Markdown, HTML page and PNGs.

The console shows the ranking at a glance (seeds and pairing, the mean primary metric and its
seed sd, its difference to the reference in points with the interval and verdict, the minimum
detectable effect, P(variant > reference) over common seeds, mean rank, which benchmarks are
better, worse or equivalent); the CSV holds every number of `Leaderboard.frame()`; Markdown and
HTML show each benchmark's metric, its difference and verdict.
"""

from __future__ import annotations

import base64
import html
import math
import os

from rich.table import Table

from .leaderboard import Leaderboard
from .plots import SYMBOLS, save_plot, variant_labels

HEATMAP, FOREST = "leaderboard_heatmap.png", "leaderboard_forest.png"


def _number(value: float, digits: int = 3) -> str:
    return "—" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _aggregate(row) -> str:
    """'+3.05 [+1.20, +4.90] ▲': the aggregate's difference to the reference in points, with
    its interval and verdict symbol (▲ better, ▼ worse, ≈ equivalent; none: undecided)."""
    if row["reference"]:
        return "reference"
    if math.isnan(row["aggregate_diff"]):
        return "—"
    mark = f" {SYMBOLS[row['aggregate_verdict']]}" if row["aggregate_verdict"] in SYMBOLS else ""
    return f"{row['aggregate_diff'] * 100:+.2f} [{row['aggregate_diff_lo'] * 100:+.2f}, {row['aggregate_diff_hi'] * 100:+.2f}]{mark}"


def _mean(row) -> str:
    """'0.606 ± 0.012': the aggregate (mean primary metric, mean over seeds) ± its seed sd."""
    sd = row["aggregate_seed_sd"]
    return _number(row["aggregate"]) + ("" if math.isnan(sd) else f" ± {sd:.3f}")


def _seeds(row) -> str:
    """'3 paired', '2 of 3 paired' (a replicate failed), '3 unpaired', or '1 items only' where
    training variance could not be measured."""
    if row["reference"]:
        return f"{row['seeds']}"
    if row["pairing"] == "paired" and row["common_seeds"] < row["seeds"]:
        return f"{row['common_seeds']} of {row['seeds']} paired"
    return f"{row['seeds']} {row['pairing']}"


def _verdict(row) -> str:
    """'better', 'equivalent', ... and the minimum detectable effect: 'undecided (MDE 3.1)'."""
    if row["reference"] or not row["aggregate_verdict"]:
        return "reference" if row["reference"] else "—"
    return f"{row['aggregate_verdict']} (MDE {row['aggregate_mde_pts']:.1f})"


def _p_better(row) -> str:
    return "—" if row["reference"] or math.isnan(row["aggregate_p_better"]) else f"{row['aggregate_p_better']:.2f}"


def _versus(row, benchmarks: tuple[str, ...]) -> str:
    """'▲ shape, colour  ▼ count  ≈ 6 more': the benchmarks better / worse than the reference,
    and how many are equivalent within the margin."""
    if row["reference"]:
        return "reference"
    named = {v: [b for b in benchmarks if row[f"{b}_verdict"] == v] for v in ("better", "worse")}
    parts = [f"{SYMBOLS[v]} {', '.join(bs)}" for v, bs in named.items() if bs]
    equivalent = sum(row[f"{b}_verdict"] == "equivalent" for b in benchmarks)
    parts += [f"≈ {equivalent} of {len(benchmarks)}"] if equivalent else []
    return "  ".join(parts) or "none decided"


def _cell(row, bench: str) -> str:
    """'0.823 (+2.1▲)': the metric, and its difference to the reference in points."""
    value = row[bench]
    if math.isnan(value):
        return "missing"
    if row["reference"]:
        return _number(value)
    mark = SYMBOLS.get(row[f"{bench}_verdict"], "")
    return f"{_number(value)} ({row[f'{bench}_diff'] * 100:+.1f}{mark})"


def display_table(board: Leaderboard) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the full table (Markdown and HTML)."""
    benchmarks = board.ranking.benchmarks
    header = ["rank", "variant", "knobs", "seeds", "mean primary ± seed sd", f"Δ pts [{board.settings.level:.0%} CI]",
              "verdict", "P(> ref)", "mean rank", *benchmarks]  # fmt: skip
    rows = [
        [str(row["rank"]), row["variant"] + (" (reference)" if row["reference"] else ""), row["knobs"], _seeds(row),
         _mean(row), _aggregate(row), _verdict(row), _p_better(row), _number(row["mean_rank"], 2),
         *(_cell(row, b) for b in benchmarks)]
        for _, row in board.frame().iterrows()
    ]  # fmt: skip
    return header, rows


def console_table(board: Leaderboard) -> Table:
    """The ranking for a terminal: one row per variant, significant benchmarks named."""
    level = f"{board.settings.level:.0%}"
    table = Table(
        title=f"Leaderboard: full tier, compared with {board.ranking.reference}",
        caption="\n".join(board.notes), caption_justify="left",
    )  # fmt: skip
    numbers = ("rank", "seeds", "mean primary ± sd", f"Δ pts [{level} CI]", "P(> ref)", "mean rank")
    columns = ("rank", "variant", "knobs", "seeds", "mean primary ± sd", f"Δ pts [{level} CI]", "verdict", "P(> ref)",
               "mean rank", "vs reference")  # fmt: skip
    for column in columns:
        table.add_column(
            column, justify="right" if column in numbers else "left",
            # the knobs give way (cut with …) before the numbers wrap
            **({"max_width": 60, "overflow": "ellipsis", "ratio": 1} if column == "knobs" else {"no_wrap": column != "vs reference"}),
        )  # fmt: skip
    for _, row in board.frame().iterrows():
        table.add_row(
            str(row["rank"]), row["variant"], row["knobs"], _seeds(row), _mean(row), _aggregate(row), _verdict(row),
            _p_better(row), _number(row["mean_rank"], 2), _versus(row, board.ranking.benchmarks),
        )  # fmt: skip
    return table


def markdown(board: Leaderboard, pictures: dict[str, str]) -> str:
    """The table, the notes and the two PNGs ({file name: path}) embedded."""
    header, rows = display_table(board)
    lines = [f"# Leaderboard (reference: {board.ranking.reference})", ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    lines += ["", "Cells: metric, mean over seeds (difference to the reference in points; ▲/▼ significant, ≈ equivalent)."]
    lines += [f"- {note}" for note in board.notes]
    lines += ["", f"![heatmap]({_data_uri(pictures[HEATMAP])})", "", f"![forest plot]({_data_uri(pictures[FOREST])})", ""]
    return "\n".join(lines)


def _data_uri(path: str) -> str:
    """A PNG inlined, so a page shows it wherever it is read (MLflow's preview resolves no paths)."""
    with open(path, "rb") as f:
        return f"data:image/png;base64,{base64.b64encode(f.read()).decode()}"


def summary(board: Leaderboard, best_trial: str | None, best_score: float | None, page: str) -> dict[str, str]:
    """Who won, in the few lines a sweep's parent MLflow run shows: by key, `winner`,
    `winner_aggregate` (mean primary over seeds, and its difference to the reference with its
    interval), `verdicts` (how many variants are better, worse, equivalent, undecided),
    `best_trial` (by cheap-tier search score), `leaderboard` (the page's path), and `text` (all
    of it as Markdown, for the run's description)."""
    frame = board.frame()
    top = frame.iloc[0]
    reference = board.ranking.reference
    alpha = board.settings.alpha  # the aggregate's own test (Holm corrects the per-benchmark ones)
    if top["reference"] or top["aggregate_verdict"] != "better":
        verdict = f"no variant's aggregate beats {reference} significantly (p < {alpha:g})"
    else:
        verdict = f"its aggregate beats {reference} significantly (p < {alpha:g})"
    counts = frame.loc[~frame["reference"], "aggregate_verdict"].value_counts()
    tally = ", ".join(f"{counts[v]} {v}" for v in ("better", "worse", "equivalent", "undecided") if v in counts)
    aggregate = f"{_mean(top)}; Δ pts vs {reference}: {_aggregate(top)}"
    best = f"{best_trial} (cheap-tier score {best_score:.3f})" if best_trial and best_score is not None else "none"
    knobs = top["knobs"] if top["knobs"].startswith("(") else f"({top['knobs']})"  # "(baseline)" has its own
    text = "\n".join([
        f"**Winner: {top['variant']}** {knobs}: {verdict}.",
        f"- aggregate (mean primary, full tier, {_seeds(top)} seed(s)): {aggregate}",
        f"- verdicts of the {len(frame) - 1} variant(s) against {reference} (±{board.settings.margin_pts:g} pts "
        f"margin): {tally or 'none'}",
        f"- best trial by search score: {best}",
        f"- leaderboard: `{page}` (also the parent run's artifacts `leaderboard/`)",
    ])  # fmt: skip
    return {"winner": str(top["variant"]), "winner_aggregate": aggregate, "verdicts": tally or "none", "best_trial": best,
            "leaderboard": page, "text": text}  # fmt: skip


def html_page(board: Leaderboard, pictures: dict[str, str]) -> str:
    """A self-contained page: the table, the notes and the PNGs embedded as data URIs."""
    header, rows = display_table(board)
    cells = lambda tag, values: "".join(f"<{tag}>{html.escape(v)}</{tag}>" for v in values)  # noqa: E731
    body = "\n".join(f"<tr>{cells('td', row)}</tr>" for row in rows)
    images = [f"<h2>{html.escape(t)}</h2><img alt='{html.escape(t)}' src='{_data_uri(path)}'>" for t, path in pictures.items()]
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in board.notes)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>clipsweep leaderboard</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #1f2328; }}
table {{ border-collapse: collapse; font-size: 13px; }}
th, td {{ border: 1px solid #d0d7de; padding: 4px 8px; text-align: right; white-space: nowrap; }}
th {{ background: #f6f8fa; }}
td:nth-child(2), td:nth-child(3), th:nth-child(2), th:nth-child(3) {{ text-align: left; }}
td:nth-child(3) {{ white-space: normal; min-width: 16em; max-width: 28em; }}
.scroll {{ overflow-x: auto; }}
img {{ max-width: 100%; }}
</style></head><body>
<h1>Leaderboard <small>(reference: {html.escape(board.ranking.reference)})</small></h1>
<div class="scroll"><table><thead><tr>{cells('th', header)}</tr></thead><tbody>
{body}
</tbody></table></div>
<p>Cells: metric, mean over seeds (difference to the reference in points; ▲/▼ significant, ≈ equivalent).</p>
<ul>{notes}</ul>
{''.join(images)}
</body></html>
"""


def write_reports(board: Leaderboard, folder: str, more_pictures: dict[str, str] | None = None) -> list[str]:
    """Writes leaderboard.csv/.md/.html and the two PNGs into `folder`; returns their paths.
    `more_pictures` ({title: PNG path}, e.g. the knob importances) go at the end of the page."""
    os.makedirs(folder, exist_ok=True)
    labels = variant_labels(board.ranking, board.knobs())
    s = board.settings
    heatmap, forest = os.path.join(folder, HEATMAP), os.path.join(folder, FOREST)
    save_plot(heatmap, board.ranking, labels, s.alpha, s.level, s.margin_pts, panels=("heatmap",))
    save_plot(forest, board.ranking, labels, s.alpha, s.level, s.margin_pts, panels=("forest",))
    paths = {name: os.path.join(folder, f"leaderboard.{name}") for name in ("csv", "md", "html")}
    board.frame().to_csv(paths["csv"], index=False)
    with open(paths["md"], "w") as f:
        f.write(markdown(board, {HEATMAP: heatmap, FOREST: forest}))
    with open(paths["html"], "w") as f:
        pictures = {"Difference to the reference per benchmark": heatmap, "Aggregate difference with intervals and each seed": forest}
        f.write(html_page(board, {**pictures, **(more_pictures or {})}))
    return [paths["csv"], paths["md"], paths["html"], heatmap, forest]
