"""The experiment's figures, with 95 % intervals over seeds (Student t, as in ``results.md``), written as PNG."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ...atomic import save_figure
from ..plots import _pyplot
from .results import summarize, t_interval

PANELS = (
    ("val_perplexity", "val caption perplexity (lower is better)"),
    ("attribute_accuracy", "attribute words named right (higher is better)"),
    ("accuracy", "question answers right (higher is better)"),
)
CURVES = (
    (0, "training step", "val_loss_vs_steps.png"),
    (1, "training time (s)", "val_loss_vs_time.png"),
)


def plot_token_efficiency(runs: list[dict], out_dir: str | os.PathLike) -> list[Path]:
    """The token-efficiency figures of a tokenizer comparison (``results.jsonl`` records).

    Writes ``perplexity_vs_tokens.png`` (val perplexity, attribute accuracy and question accuracy against mean
    tokens per image, one line per tokenizer through its budgets, set a little apart sideways where counts are
    equal; error bars: the 95 % interval over seeds of :func:`summarize`, none with one seed), ``val_loss_vs_steps.png`` and ``val_loss_vs_time.png`` (mean curve
    over seeds per tokenizer and budget, band: the 95 % interval over seeds at each evaluation; time is training
    time, evaluation excluded). Returns the paths written.
    """
    out_dir = Path(out_dir)
    rows = summarize(runs)
    names = list(dict.fromkeys(r["tokenizer"] for r in runs))
    paths = [_plot_metrics(rows, names, out_dir / "perplexity_vs_tokens.png")]
    for index, label, file_name in CURVES:
        paths.append(_plot_curves(runs, names, index, label, out_dir / file_name))
    return paths


def _colours(names: list[str]) -> dict:
    plt = _pyplot()
    return {name: plt.cm.tab10(i % 10) for i, name in enumerate(names)}


def _plot_metrics(rows: list[dict], names: list[str], path: Path) -> Path:
    """One panel per metric of ``PANELS``: mean against tokens per image, 95 % intervals as error bars."""
    plt = _pyplot()
    colours = _colours(names)
    fig, axes = plt.subplots(1, len(PANELS), figsize=(5.0 * len(PANELS), 4.2))
    for ax, (key, label) in zip(axes, PANELS):
        for i, name in enumerate(names):
            points = sorted((r for r in rows if r["tokenizer"] == name), key=lambda r: r["mean_tokens"])
            dodge = 2 ** (0.04 * (i - (len(names) - 1) / 2))  # side by side where counts are equal
            x = np.array([r["mean_tokens"] for r in points]) * dodge
            y = np.array([r[key] for r in points])
            below = np.nan_to_num(y - np.array([r[f"{key}_low"] for r in points]))  # no bar with one seed
            above = np.nan_to_num(np.array([r[f"{key}_high"] for r in points]) - y)
            ax.errorbar(x, y, yerr=[below, above], marker="o", capsize=3, color=colours[name], label=name)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("mean visual tokens per image")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, title="bars: 95 % interval over seeds", title_fontsize=7)
    fig.tight_layout()
    save_figure(path, fig, dpi=110)
    plt.close(fig)
    return path


def _plot_curves(runs: list[dict], names: list[str], index: int, label: str, path: Path) -> Path:
    """Val loss against step (``index`` 0) or training time (1): mean over seeds, 95 % interval as a band."""
    plt = _pyplot()
    colours = _colours(names)
    styles = ["-", "--", ":", "-."]
    budgets = sorted({r["budget"] for r in runs})
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for name in names:
        for b, budget in enumerate(budgets):
            curves = [
                np.array(r["curve"], float) for r in runs if r["tokenizer"] == name and r["budget"] == budget
            ]
            if not curves:
                continue
            length = min(len(c) for c in curves)
            stacked = np.stack([c[:length] for c in curves])  # (seeds, points, 3) step, seconds, loss
            x, mean = stacked[:, :, index].mean(0), stacked[:, :, 2].mean(0)
            colour, style = colours[name], styles[b % len(styles)]
            ax.plot(x, mean, style, color=colour, label=f"{name} @ {budget}")
            band = np.array([t_interval(stacked[:, point, 2]) for point in range(length)])  # (points, 2)
            if np.isfinite(band).all():
                ax.fill_between(x, band[:, 0], band[:, 1], color=colour, alpha=0.15, linewidth=0)
    ax.set_xlabel(label)
    ax.set_ylabel("val caption loss (nats / token)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2, title="bands: 95 % interval over seeds", title_fontsize=7)
    fig.tight_layout()
    save_figure(path, fig, dpi=120)
    plt.close(fig)
    return path


__all__ = ["plot_token_efficiency"]
