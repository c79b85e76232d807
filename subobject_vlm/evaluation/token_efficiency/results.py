"""``results.jsonl`` (append-only, crash-safe) and ``results.md``: the table of mean and spread over seeds, 95 %
confidence intervals over seeds, and paired comparisons of each tokenizer against ours at equal budgets."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from ...atomic import write_text

RESULT_FIELDS = (
    "tokenizer", "budget", "seed", "mean_tokens", "steps", "batch_size", "val_loss", "val_perplexity",
    "best_val_loss", "best_step", "accuracy", "accuracy_by_task", "attribute_accuracy", "train_seconds", "wall_seconds",
    "step_seconds", "curve",
)  # fmt: skip
SUMMARY_METRICS = ("mean_tokens", "val_loss", "best_val_loss", "val_perplexity", "accuracy", "attribute_accuracy",
                   "step_seconds", "train_seconds", "wall_seconds")  # fmt: skip
# key -> column title in the interval and paired tables
STATS_METRICS = {"val_loss": "val loss", "best_val_loss": "best val loss", "attribute_accuracy": "attribute accuracy",
                 "accuracy": "QA accuracy"}  # fmt: skip


def read_results(path: Path) -> list[dict]:
    """Finished runs; a torn last line (a run killed while writing) is ignored."""
    if not path.is_file():
        return []
    runs = []
    for line in path.read_text().splitlines():
        try:
            runs.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return runs


def strict_json(value: Any) -> Any:
    """``value`` with every NaN or infinite float (a metric without data) as ``None``: ``null`` in JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: strict_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(item) for item in value]
    return value


def append_result(path: Path, record: dict) -> None:
    """Append one line of strict JSON (a metric without data is ``null``) and fsync, so a finished run survives
    a crash of a later one."""
    text = path.read_text() if path.is_file() else ""
    if text and not text.endswith("\n"):  # drop a torn line left by an interrupted write
        text = text[: text.rfind("\n") + 1]
    write_text(path, text + json.dumps(strict_json(record), allow_nan=False) + "\n")


def experiment_runs(
    runs: list[dict], fingerprint: str, tokenizer_keys: dict[str, str] | None = None
) -> list[dict]:
    """The runs of one experiment (same data, model and training: ``fingerprint``), however many invocations or
    machines wrote them; a tokenizer named in ``tokenizer_keys`` (name -> settings digest) counts only with its
    current settings; a (tokenizer, budget, seed) run more than once counts once, its last record."""
    keys = tokenizer_keys or {}
    latest = {(r["tokenizer"], r["budget"], r["seed"]): r for r in runs if r.get("fingerprint") == fingerprint
              and keys.get(r["tokenizer"], r.get("tokenizer_key")) == r.get("tokenizer_key")}  # fmt: skip
    return list(latest.values())


def _finite(members: list[dict], key: str) -> np.ndarray:
    """``key`` of each run, without the runs where it is ``null``, NaN or missing."""
    values = np.array([np.nan if m.get(key) is None else m[key] for m in members], dtype=float)
    return values[np.isfinite(values)]


def t_interval(values: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """Student-t interval of the mean of ``values`` (mean ± t * std / sqrt(n), std with n - 1); NaN for n < 2."""
    from scipy import stats

    n = len(values)
    if n < 2:
        return math.nan, math.nan
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * values.std(ddof=1) / math.sqrt(n))
    return float(values.mean()) - half, float(values.mean()) + half


def summarize(runs: list[dict]) -> list[dict]:
    """Mean, standard deviation and 95 % Student-t interval (``{key}_low``, ``{key}_high``; NaN with one seed)
    over seeds per (tokenizer, budget), in first-seen order, over the seeds where the metric has a value
    (``{key}_n``): a metric a run lacks (``null``, or a field older results do not have) is skipped, NaN when no
    run has it. ``best_steps``: the step of the best val loss of each seed."""
    groups: dict[tuple, list[dict]] = {}
    for run in runs:
        groups.setdefault((run["tokenizer"], run["budget"]), []).append(run)
    rows = []
    for (name, budget), members in groups.items():
        row = {"tokenizer": name, "budget": budget, "seeds": len(members)}
        for key in SUMMARY_METRICS:
            values = _finite(members, key)
            row[key] = float(values.mean()) if len(values) else math.nan
            row[f"{key}_std"] = float(values.std()) if len(values) else math.nan
            row[f"{key}_low"], row[f"{key}_high"] = t_interval(values)
            row[f"{key}_n"] = len(values)
        row["best_steps"] = [m.get("best_step") for m in members]
        rows.append(row)
    return rows


def paired_comparisons(runs: list[dict], reference: str | None = None) -> list[dict]:
    """Each tokenizer against ``reference`` (default: every tokenizer named ``ours*``) at the same budget, paired
    by seed (same seed: same initialisation and batches): per metric of ``STATS_METRICS``, the pairs where both
    have a value (``{key}_n``), the mean difference other - reference, its 95 % Student-t interval and the
    two-sided paired t-test p-value (``scipy.stats.ttest_rel``); NaN with fewer than 2 pairs (and the p-value
    NaN when every pair differs by the same amount). Two references are compared once."""
    from scipy import stats

    names = list(dict.fromkeys(r["tokenizer"] for r in runs))
    references = [reference] if reference is not None else [n for n in names if n.startswith("ours")]
    by_key = {(r["tokenizer"], r["budget"], r["seed"]): r for r in runs}
    rows = []
    for ref in references:
        for name in names:
            if name in references[: references.index(ref) + 1]:  # itself, or an earlier reference: done
                continue
            budgets = dict.fromkeys(b for (n, b, _) in by_key if n == name)
            for budget in budgets:
                seeds = [
                    s for (n, b, s) in by_key if n == name and b == budget and (ref, budget, s) in by_key
                ]
                if not seeds:
                    continue
                row = {"reference": ref, "tokenizer": name, "budget": budget, "pairs": len(seeds)}
                for key in STATS_METRICS:
                    pairs = np.array([[by_key[name, budget, s].get(key), by_key[ref, budget, s].get(key)]
                                      for s in seeds], dtype=float).reshape(-1, 2)  # fmt: skip
                    pairs = pairs[np.isfinite(pairs).all(axis=1)]  # (n, 2) other, reference
                    diffs = pairs[:, 0] - pairs[:, 1]
                    row[key] = float(diffs.mean()) if len(diffs) else math.nan
                    row[f"{key}_low"], row[f"{key}_high"] = t_interval(diffs)
                    row[f"{key}_p"] = math.nan
                    if len(diffs) >= 2 and not np.allclose(
                        diffs, diffs[0], rtol=0, atol=1e-12
                    ):  # else no spread
                        row[f"{key}_p"] = float(stats.ttest_rel(pairs[:, 0], pairs[:, 1]).pvalue)
                    row[f"{key}_n"] = len(diffs)
                rows.append(row)
    return rows


def _cell(mean: float, std: float | None = None, digits: int = 3) -> str:
    """``mean ± std`` to ``digits`` places, or ``n/a`` for a metric without data."""
    if not math.isfinite(mean):
        return "n/a"
    return f"{mean:.{digits}f}" if std is None else f"{mean:.{digits}f} ± {std:.{digits}f}"


def results_table(runs: list[dict]) -> str:
    """Markdown: one row per (tokenizer, budget), mean ± std over seeds; ``n/a`` where a metric has no data."""
    lines = [
        "| tokenizer | budget | tokens / image | val loss | best val loss (step) | val perplexity "
        "| attribute accuracy | QA accuracy | ms / step | s / run | seeds |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(summarize(runs), key=lambda r: (r["budget"], r["val_perplexity"])):
        best = _cell(r["best_val_loss"], r["best_val_loss_std"], 4)
        if best != "n/a":
            best += f" (step {'/'.join(str(step) for step in r['best_steps'])})"
        lines.append(
            f"| {r['tokenizer']} | {r['budget']} | {_cell(r['mean_tokens'], digits=1)} "
            f"| {_cell(r['val_loss'], r['val_loss_std'], 4)} | {best} "
            f"| {_cell(r['val_perplexity'], r['val_perplexity_std'])} "
            f"| {_cell(r['attribute_accuracy'], r['attribute_accuracy_std'])} "
            f"| {_cell(r['accuracy'], r['accuracy_std'])} | {_cell(1000 * r['step_seconds'], digits=1)} "
            f"| {_cell(r['wall_seconds'], digits=0)} | {r['seeds']} |"
        )
    return "\n".join(lines) + "\n"


def _interval(low: float, high: float, digits: int = 3) -> str:
    """``[low, high]``, or ``n/a`` (fewer than 2 values)."""
    return "n/a" if not math.isfinite(low) else f"[{low:.{digits}f}, {high:.{digits}f}]"


def _digits(key: str) -> int:
    return 4 if "loss" in key else 3


def intervals_table(runs: list[dict]) -> str:
    """Markdown: per (tokenizer, budget) and metric of ``STATS_METRICS``, ``mean [95 % interval]`` over seeds
    (Student t; ``n/a`` with one seed), ``n=`` where fewer seeds than the row's have the metric."""
    lines = [
        "| tokenizer | budget | " + " | ".join(STATS_METRICS.values()) + " | seeds |",
        "|---|---|" + "---|" * len(STATS_METRICS) + "---|",
    ]
    for r in sorted(summarize(runs), key=lambda r: (r["budget"], r["val_perplexity"])):
        cells = []
        for key in STATS_METRICS:
            cell = _cell(r[key], digits=_digits(key))
            if cell != "n/a":
                cell += " " + _interval(r[f"{key}_low"], r[f"{key}_high"], _digits(key))
                cell += f" n={r[f'{key}_n']}" if r[f"{key}_n"] != r["seeds"] else ""
            cells.append(cell)
        lines.append(f"| {r['tokenizer']} | {r['budget']} | " + " | ".join(cells) + f" | {r['seeds']} |")
    return "\n".join(lines) + "\n"


def paired_table(runs: list[dict], reference: str | None = None) -> str:
    """Markdown of :func:`paired_comparisons`: per metric, ``difference [95 % interval] p=...`` (other minus
    reference; loss lower and accuracy higher is better), ``n/a`` with fewer than 2 pairs."""
    lines = [
        "| tokenizer | vs | budget | " + " | ".join(STATS_METRICS.values()) + " | pairs |",
        "|---|---|---|" + "---|" * len(STATS_METRICS) + "---|",
    ]
    for r in paired_comparisons(runs, reference):
        cells = []
        for key in STATS_METRICS:
            if r[f"{key}_n"] < 2:
                cells.append("n/a")
                continue
            p = "p n/a" if not math.isfinite(r[f"{key}_p"]) else f"p={r[f'{key}_p']:.3g}"
            cell = (
                f"{r[key]:+.{_digits(key)}f} {_interval(r[f'{key}_low'], r[f'{key}_high'], _digits(key))} {p}"
            )
            cells.append(cell + (f" n={r[f'{key}_n']}" if r[f"{key}_n"] != r["pairs"] else ""))
        lines.append(f"| {r['tokenizer']} | {r['reference']} | {r['budget']} | " + " | ".join(cells)
                     + f" | {r['pairs']} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def results_markdown(runs: list[dict], reference: str | None = None) -> str:
    """``results.md``: :func:`results_table`, then :func:`intervals_table` and :func:`paired_table` (against
    ``reference``, default every tokenizer named ``ours*``) under their headings."""
    return (
        results_table(runs)
        + "\n## 95 % confidence intervals over seeds\n\n"
        + "Mean [Student-t 95 % interval] over seeds; n/a with one seed; `n=` where fewer seeds have the metric.\n\n"
        + intervals_table(runs)
        + "\n## Paired comparisons against ours at equal budgets\n\n"
        + "Other minus ours, paired by seed (same seed: same initialisation and batches): mean difference "
        + "[95 % interval] and two-sided paired t-test p-value; loss: lower is better, accuracy: higher is "
        + "better; n/a with fewer than 2 pairs.\n\n"
        + paired_table(runs, reference)
    )
