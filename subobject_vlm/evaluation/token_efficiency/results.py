"""``results.jsonl`` (append-only, crash-safe) and the markdown table of mean and spread over seeds."""

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


def summarize(runs: list[dict]) -> list[dict]:
    """Mean and standard deviation over seeds per (tokenizer, budget), in first-seen order; a metric a run lacks
    (``null``, or a field older results do not have) is NaN. ``best_steps``: the step of the best val loss of
    each seed."""
    groups: dict[tuple, list[dict]] = {}
    for run in runs:
        groups.setdefault((run["tokenizer"], run["budget"]), []).append(run)
    rows = []
    for (name, budget), members in groups.items():
        row = {"tokenizer": name, "budget": budget, "seeds": len(members)}
        for key in ("mean_tokens", "val_loss", "best_val_loss", "val_perplexity", "accuracy", "attribute_accuracy",
                    "step_seconds", "train_seconds", "wall_seconds"):  # fmt: skip
            values = np.array([np.nan if m.get(key) is None else m[key] for m in members], dtype=float)
            row[key], row[f"{key}_std"] = float(values.mean()), float(values.std())
        row["best_steps"] = [m.get("best_step") for m in members]
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
