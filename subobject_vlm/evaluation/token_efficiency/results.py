"""``results.jsonl`` (append-only, crash-safe) and the markdown table of mean and spread over seeds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ...atomic import write_text

RESULT_FIELDS = (
    "tokenizer", "budget", "seed", "mean_tokens", "steps", "batch_size", "val_loss", "val_perplexity",
    "accuracy", "accuracy_by_task", "attribute_accuracy", "train_seconds", "wall_seconds", "step_seconds", "curve",
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


def append_result(path: Path, record: dict) -> None:
    """Append one line and fsync, so a finished run survives a crash of a later one."""
    text = path.read_text() if path.is_file() else ""
    if text and not text.endswith("\n"):  # drop a torn line left by an interrupted write
        text = text[: text.rfind("\n") + 1]
    write_text(path, text + json.dumps(record) + "\n")


def summarize(runs: list[dict]) -> list[dict]:
    """Mean and standard deviation over seeds per (tokenizer, budget), in first-seen order."""
    groups: dict[tuple, list[dict]] = {}
    for run in runs:
        groups.setdefault((run["tokenizer"], run["budget"]), []).append(run)
    rows = []
    for (name, budget), members in groups.items():
        row = {"tokenizer": name, "budget": budget, "seeds": len(members)}
        for key in ("mean_tokens", "val_loss", "val_perplexity", "accuracy", "attribute_accuracy", "step_seconds",
                    "train_seconds", "wall_seconds"):  # fmt: skip
            values = np.array([m.get(key, np.nan) for m in members], dtype=float)
            row[key], row[f"{key}_std"] = float(values.mean()), float(values.std())
        rows.append(row)
    return rows


def results_table(runs: list[dict]) -> str:
    """Markdown: one row per (tokenizer, budget), mean ± std over seeds."""
    lines = [
        "| tokenizer | budget | tokens / image | val loss | val perplexity | attribute accuracy | QA accuracy "
        "| ms / step | s / run | seeds |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(summarize(runs), key=lambda r: (r["budget"], r["val_perplexity"])):
        lines.append(
            f"| {r['tokenizer']} | {r['budget']} | {r['mean_tokens']:.1f} "
            f"| {r['val_loss']:.4f} ± {r['val_loss_std']:.4f} | {r['val_perplexity']:.3f} ± {r['val_perplexity_std']:.3f} "
            f"| {r['attribute_accuracy']:.3f} ± {r['attribute_accuracy_std']:.3f} "
            f"| {r['accuracy']:.3f} ± {r['accuracy_std']:.3f} | {1000 * r['step_seconds']:.1f} "
            f"| {r['wall_seconds']:.0f} | {r['seeds']} |"
        )
    return "\n".join(lines) + "\n"
