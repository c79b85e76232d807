"""Figures for BSDS evaluations (matplotlib, Agg backend, written to PNG files)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..atomic import save_figure


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _iso_f(ax, levels=np.arange(0.1, 1.0, 0.1)) -> None:
    """Light iso-F curves ``F = 2PR / (P + R)`` on a precision-recall axis."""
    recall = np.linspace(0.01, 1.0, 200)
    for f in levels:
        with np.errstate(divide="ignore", invalid="ignore"):
            precision = f * recall / (2 * recall - f)
        ok = (precision > 0) & (precision <= 1) & (recall >= f / 2)
        ax.plot(recall[ok], precision[ok], color="0.85", lw=0.8, zorder=0)
        if ok.any():
            ax.text(recall[ok][-1], precision[ok][-1], f"{f:.1f}", color="0.6", fontsize=7, va="bottom")


def plot_pr_curves(boundaries: dict[str, dict], path: str | os.PathLike, title: str = "") -> Path:
    """Precision-recall curves with ODS (dot) and OIS (cross) marked, over iso-F contours.

    Args:
        boundaries: label -> ``summarize_boundary_counts`` dict (``curve``, ``ODS``, ``OIS``, ``AP``).
        path: PNG file to write.
        title: figure title.

    Returns:
        The written path.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    _iso_f(ax)
    for i, (label, result) in enumerate(boundaries.items()):
        color = f"C{i}"
        curve = result["curve"]
        recall, precision = np.asarray(curve["recall"]), np.asarray(curve["precision"])
        keep = (recall > 0) | (precision > 0)
        ods, ois = result["ODS"], result["OIS"]
        ax.plot(
            recall[keep],
            precision[keep],
            color=color,
            lw=1.8,
            label=f"{label}: ODS {ods['f']:.3f}  OIS {ois['f']:.3f}  AP {result['AP']:.3f}",
        )
        ax.plot(ods["recall"], ods["precision"], "o", color=color, ms=7, mec="k")
        ax.plot(ois["recall"], ois["precision"], "x", color=color, ms=8, mew=2)
    ax.plot([], [], "ko", label="ODS (best dataset threshold)")
    ax.plot([], [], "kx", label="OIS (best threshold per image)")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="Recall", ylabel="Precision", title=title or "Boundary PR")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=7)
    fig.tight_layout()
    path = Path(path)
    save_figure(path, fig, dpi=120)
    plt.close(fig)
    return path


def plot_token_metrics(
    tokens: dict[str, dict[str, dict]], metrics: list[str], path: str | os.PathLike, title: str = ""
) -> Path:
    """One panel per metric: its dataset mean against mean tokens per image, a line per tokenizer.

    Args:
        tokens: tokenizer -> budget (str) -> ``{metric: mean, ..., "tokens": mean tokens}``.
        metrics: metric names to draw.
        path: PNG file to write.

    Returns:
        The written path.
    """
    plt = _pyplot()
    cols = min(3, len(metrics))
    rows = -(-len(metrics) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    for ax, metric in zip(axes.ravel(), metrics):
        for i, (name, per_budget) in enumerate(tokens.items()):
            budgets = sorted(per_budget, key=lambda b: per_budget[b]["tokens"])
            x = [per_budget[b]["tokens"] for b in budgets]
            y = [per_budget[b][metric] for b in budgets]
            ax.plot(x, y, "o-", color=f"C{i}", label=name, lw=1.5, ms=4)
        ax.set_xscale("log", base=2)
        ax.set(xlabel="tokens per image", title=metric.replace("_", " "))
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[len(metrics) :]:
        ax.axis("off")
    axes.ravel()[0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    save_figure(path, fig, dpi=110)
    plt.close(fig)
    return path


def plot_tokenizer_examples(
    images: np.ndarray, label_maps: dict[str, np.ndarray], path: str | os.PathLike
) -> Path:
    """What each tokenizer hands the model: one row per tokenizer, one column per image, each region painted
    with its mean colour (what a raw-pixel token holds) and outlined, the token count above it.

    Args:
        images: (N, H, W, 3) uint8.
        label_maps: row title -> (N, H, W) integer label maps of those images.
        path: PNG file to write.
    """
    from ..segmentation.visualize import label_boundaries, mean_colour_image

    plt = _pyplot()
    rows, columns = len(label_maps) + 1, len(images)
    fig, axes = plt.subplots(rows, columns, figsize=(1.6 * columns + 1.2, 1.6 * rows), squeeze=False)
    for j, image in enumerate(images):
        axes[0, j].imshow(image)
    axes[0, 0].set_ylabel("image", fontsize=8)
    for i, (name, maps) in enumerate(label_maps.items(), start=1):
        for j, image in enumerate(images):
            painted = mean_colour_image(image, maps[j])
            painted[label_boundaries(maps[j])] = (255, 40, 40)
            axes[i, j].imshow(painted)
            count = int(maps[j].max()) + 1
            axes[i, j].set_title(f"{count} token{'s' * (count != 1)}", fontsize=7, pad=2)
        axes[i, 0].set_ylabel(name, fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    path = Path(path)
    save_figure(path, fig, dpi=110)
    plt.close(fig)
    return path


__all__ = ["plot_pr_curves", "plot_token_metrics", "plot_tokenizer_examples"]
