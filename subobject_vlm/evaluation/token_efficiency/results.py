"""``results.jsonl`` (append-only, crash-safe) and ``results.md``: the table of mean and spread over seeds, 95 %
confidence intervals over seeds, paired comparisons of each tokenizer against ours at equal budgets, the same per
attribute group, and which runs shared their label maps (trained once, reported for each)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from ...atomic import write_text
from .config import DEFAULT_EVALUATION_KEY

RESULT_FIELDS = (
    "tokenizer",
    "budget",
    "seed",
    "mean_tokens",
    "steps",
    "batch_size",
    "val_loss",
    "val_perplexity",
    "best_val_loss",
    "best_step",
    "accuracy",
    "accuracy_by_task",
    "attribute_accuracy",
    "attribute_accuracy_by_group",
    "train_seconds",
    "wall_seconds",
    "step_seconds",
    "curve",
)
SUMMARY_METRICS = (
    "mean_tokens",
    "val_loss",
    "best_val_loss",
    "val_perplexity",
    "accuracy",
    "attribute_accuracy",
    "step_seconds",
    "train_seconds",
    "wall_seconds",
)
# key -> column title in the interval and paired tables
STATS_METRICS = {
    "val_loss": "val loss",
    "best_val_loss": "best val loss",
    "attribute_accuracy": "attribute accuracy",
    "accuracy": "QA accuracy",
}


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
    runs: list[dict],
    fingerprint: str,
    tokenizer_keys: dict[str, str] | None = None,
    evaluation_key: str | None = None,
) -> list[dict]:
    """The runs of one experiment (same data, model and training: ``fingerprint``), however many invocations or
    machines wrote them; a tokenizer named in ``tokenizer_keys`` (name -> settings digest) counts only with its
    current settings, and with ``evaluation_key`` only runs evaluated with those evaluation settings count (a
    record without a key had the defaults); a (tokenizer, budget, seed) run more than once counts once, its last
    record."""
    keys = tokenizer_keys or {}
    latest = {}
    for run in runs:
        if run.get("fingerprint") != fingerprint:
            continue
        if keys.get(run["tokenizer"], run.get("tokenizer_key")) != run.get("tokenizer_key"):
            continue
        if evaluation_key is not None and record_evaluation_key(run) != evaluation_key:
            continue
        latest[run["tokenizer"], run["budget"], run["seed"]] = run
    return list(latest.values())


def record_evaluation_key(run: dict) -> str:
    """The evaluation settings a record was scored with (records from before keys existed: the defaults)."""
    return run.get("evaluation_key", DEFAULT_EVALUATION_KEY)


def group_metric(group: str) -> str:
    """The key of attribute group ``group``'s accuracy in :func:`summarize` and :func:`paired_comparisons`."""
    return f"attribute_accuracy[{group}]"


def groups_of(runs: list[dict]) -> dict[str, str]:
    """``group_metric(group) -> group`` for every attribute group scored in ``runs``, in first-seen order."""
    groups = dict.fromkeys(g for r in runs for g in r.get("attribute_accuracy_by_group") or {})
    return {group_metric(group): group for group in groups}


def metric_value(run: dict, key: str) -> Any:
    """``run[key]``, or an attribute group's accuracy for a :func:`group_metric` key; ``None`` when absent.
    Records from before ``best_val_loss`` / ``best_step`` existed get them from their ``curve``, as training
    computes them (the first lowest val loss)."""
    if key.startswith("attribute_accuracy[") and key.endswith("]"):
        return (run.get("attribute_accuracy_by_group") or {}).get(key[len("attribute_accuracy[") : -1])
    if key in ("best_val_loss", "best_step") and key not in run and run.get("curve"):
        losses = [np.nan if point[2] is None else point[2] for point in run["curve"]]
        if np.isfinite(losses).any():
            best = run["curve"][int(np.nanargmin(losses))]
            return best[2] if key == "best_val_loss" else best[0]
    return run.get(key)


def _finite(members: list[dict], key: str) -> np.ndarray:
    """``key`` of each run, without the runs where it is ``null``, NaN or missing."""
    values = [metric_value(m, key) for m in members]
    values = np.array([np.nan if v is None else v for v in values], dtype=float)
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
    run has it. Metrics: ``SUMMARY_METRICS`` and each attribute group's accuracy (:func:`group_metric`).
    ``best_steps``: the step of the best val loss of each seed; ``same_as``: the run whose label maps (and so
    results) a row shares, if any."""
    groups: dict[tuple, list[dict]] = {}
    for run in runs:
        groups.setdefault((run["tokenizer"], run["budget"]), []).append(run)
    rows = []
    for (name, budget), members in groups.items():
        row = {"tokenizer": name, "budget": budget, "seeds": len(members)}
        for key in (*SUMMARY_METRICS, *groups_of(runs)):
            values = _finite(members, key)
            row[key] = float(values.mean()) if len(values) else math.nan
            row[f"{key}_std"] = float(values.std()) if len(values) else math.nan
            row[f"{key}_low"], row[f"{key}_high"] = t_interval(values)
            row[f"{key}_n"] = len(values)
        row["best_steps"] = [metric_value(m, "best_step") for m in members]
        row["same_as"] = next((m["same_as"] for m in members if m.get("same_as")), None)
        rows.append(row)
    return rows


def paired_comparisons(runs: list[dict], reference: str | None = None) -> list[dict]:
    """Each tokenizer against ``reference`` (default: every tokenizer named ``ours*``) at the same budget, paired
    by seed (same seed: same initialisation and batches): per metric of ``STATS_METRICS`` and attribute group
    (:func:`group_metric`), the pairs where both have a value (``{key}_n``), the mean difference other -
    reference, its 95 % Student-t interval and the two-sided paired t-test p-value (``scipy.stats.ttest_rel``);
    NaN with fewer than 2 pairs (and the p-value NaN when every pair differs by the same amount). Two references
    are compared once."""
    names = list(dict.fromkeys(r["tokenizer"] for r in runs))
    references = [reference] if reference is not None else [n for n in names if n.startswith("ours")]
    by_key = {(r["tokenizer"], r["budget"], r["seed"]): r for r in runs}
    metrics = (*STATS_METRICS, *groups_of(runs))
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
                for key in metrics:
                    pairs = [(by_key[name, budget, s], by_key[ref, budget, s]) for s in seeds]
                    row.update(_paired_difference(pairs, key))
                rows.append(row)
    return rows


def _paired_difference(pairs: list[tuple[dict, dict]], key: str) -> dict:
    """Metric ``key`` over (other, reference) run pairs: ``{key}`` the mean difference, ``{key}_low`` /
    ``_high`` its 95 % interval, ``{key}_p`` the paired t-test p-value, ``{key}_n`` the pairs with both values."""
    from scipy import stats

    values = [[metric_value(other, key), metric_value(ref, key)] for other, ref in pairs]
    values = np.array([[np.nan if v is None else v for v in pair] for pair in values], dtype=float)
    values = values.reshape(-1, 2)[np.isfinite(values.reshape(-1, 2)).all(axis=1)]  # (n, 2) other, reference
    diffs = values[:, 0] - values[:, 1]
    row = {key: float(diffs.mean()) if len(diffs) else math.nan, f"{key}_p": math.nan, f"{key}_n": len(diffs)}
    row[f"{key}_low"], row[f"{key}_high"] = t_interval(diffs)
    if len(diffs) >= 2 and not np.allclose(diffs, diffs[0], rtol=0, atol=1e-12):  # else no spread
        row[f"{key}_p"] = float(stats.ttest_rel(values[:, 0], values[:, 1]).pvalue)
    return row


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


def intervals_table(runs: list[dict], metrics: dict[str, str] | None = None) -> str:
    """Markdown: per (tokenizer, budget) and metric (key -> column title; default ``STATS_METRICS``),
    ``mean [95 % interval]`` over seeds (Student t; ``n/a`` with one seed), ``n=`` where fewer seeds than the
    row's have the metric."""
    metrics = STATS_METRICS if metrics is None else metrics
    lines = [
        "| tokenizer | budget | " + " | ".join(metrics.values()) + " | seeds |",
        "|---|---|" + "---|" * len(metrics) + "---|",
    ]
    for r in sorted(summarize(runs), key=lambda r: (r["budget"], r["val_perplexity"])):
        cells = []
        for key in metrics:
            cell = _cell(r[key], digits=_digits(key))
            if cell != "n/a":
                cell += " " + _interval(r[f"{key}_low"], r[f"{key}_high"], _digits(key))
                cell += f" n={r[f'{key}_n']}" if r[f"{key}_n"] != r["seeds"] else ""
            cells.append(cell)
        lines.append(f"| {r['tokenizer']} | {r['budget']} | " + " | ".join(cells) + f" | {r['seeds']} |")
    return "\n".join(lines) + "\n"


def paired_table(
    runs: list[dict], reference: str | None = None, metrics: dict[str, str] | None = None
) -> str:
    """Markdown of :func:`paired_comparisons`: per metric (key -> column title; default ``STATS_METRICS``),
    ``difference [95 % interval] p=...`` (other minus reference; loss lower and accuracy higher is better),
    ``n/a`` with fewer than 2 pairs."""
    metrics = STATS_METRICS if metrics is None else metrics
    lines = [
        "| tokenizer | vs | budget | " + " | ".join(metrics.values()) + " | pairs |",
        "|---|---|---|" + "---|" * len(metrics) + "---|",
    ]
    for r in paired_comparisons(runs, reference):
        cells = []
        for key in metrics:
            if r[f"{key}_n"] < 2:
                cells.append("n/a")
                continue
            p = "p n/a" if not math.isfinite(r[f"{key}_p"]) else f"p={r[f'{key}_p']:.3g}"
            interval = _interval(r[f"{key}_low"], r[f"{key}_high"], _digits(key))
            cell = f"{r[key]:+.{_digits(key)}f} {interval} {p}"
            cells.append(cell + (f" n={r[f'{key}_n']}" if r[f"{key}_n"] != r["pairs"] else ""))
        cells = " | ".join(cells)
        lines.append(f"| {r['tokenizer']} | {r['reference']} | {r['budget']} | {cells} | {r['pairs']} |")
    return "\n".join(lines) + "\n"


def shared_runs_note(runs: list[dict]) -> str:
    """Markdown lines naming each (tokenizer, budget) whose label maps equal another's: trained once, its
    results reported for both; empty when none."""
    shared = [r for r in summarize(runs) if r["same_as"]]
    return "".join(
        f"- {r['tokenizer']} @ {r['budget']}: label maps identical to {r['same_as'].replace('@', ' @ ')} "
        "(same token counts, same maps), so trained once and reported for both.\n"
        for r in shared
    )


def results_markdown(runs: list[dict], reference: str | None = None) -> str:
    """``results.md``: :func:`results_table`, runs sharing label maps (:func:`shared_runs_note`), then
    :func:`intervals_table` and :func:`paired_table` (against ``reference``, default every tokenizer named
    ``ours*``), and both per attribute group when runs have groups, under their headings."""
    against = "ours" if reference is None else reference
    shared = shared_runs_note(runs)
    text = results_table(runs) + (f"\n{shared}" if shared else "")
    text += (
        "\n## 95 % confidence intervals over seeds\n\n"
        "Mean [Student-t 95 % interval] over seeds; n/a with one seed; `n=` where fewer seeds have the metric.\n\n"
        + intervals_table(runs)
        + f"\n## Paired comparisons against {against} at equal budgets\n\n"
        + f"Other minus {against}, paired by seed (same seed: same initialisation and batches): mean difference "
        + "[95 % interval] and two-sided paired t-test p-value; loss: lower is better, accuracy: higher is "
        + "better; n/a with fewer than 2 pairs.\n\n"
        + paired_table(runs, reference)
    )
    groups = groups_of(runs)
    if groups:
        text += (
            "\n## Attribute accuracy per group\n\n"
            "Attribute words of each group (`data.attribute_groups`) named right: mean [95 % interval] over "
            "seeds, then other minus "
            + against
            + " paired by seed.\n\n"
            + intervals_table(runs, groups)
            + "\n"
            + paired_table(runs, reference, groups)
        )
    return text
