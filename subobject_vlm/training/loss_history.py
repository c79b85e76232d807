"""A training run's loss history: ``log_history.json`` and ``loss_curve.png`` (drawn with PIL, no matplotlib)."""

from __future__ import annotations

import math
import os
from pathlib import Path

from ..atomic import save_image, write_json


def plot_loss_curve(
    log_history: list[dict], path: str | os.PathLike, size: tuple[int, int] = (800, 480)
) -> Path | None:
    """Draw train (blue) and val (orange) loss against step as a PNG with PIL; ``None`` if nothing was logged."""
    from PIL import Image, ImageDraw

    series = {
        "train loss": [(e["step"], e["loss"]) for e in log_history if "loss" in e and "step" in e],
        "val loss": [(e["step"], e["eval_loss"]) for e in log_history if "eval_loss" in e and "step" in e],
    }
    points = [p for s in series.values() for p in s if math.isfinite(p[1])]
    if not points:
        return None
    width, height = size
    left, right, top, bottom = 70, 20, 30, 45
    steps, losses = [p[0] for p in points], [p[1] for p in points]
    x0, x1 = min(steps), max(max(steps), min(steps) + 1)
    y0, y1 = min(losses), max(losses)
    y0, y1 = (y0 - 0.05 * (y1 - y0 or 1), y1 + 0.05 * (y1 - y0 or 1))

    def to_pixel(step: float, loss: float) -> tuple[float, float]:
        x = left + (step - x0) / (x1 - x0) * (width - left - right)
        y = top + (y1 - loss) / (y1 - y0) * (height - top - bottom)
        return x, y

    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle([left, top, width - right, height - bottom], outline="black")
    for i in range(5):  # grid lines and tick labels
        loss = y0 + (y1 - y0) * i / 4
        _, y = to_pixel(x0, loss)
        draw.line([left, y, width - right, y], fill=(225, 225, 225))
        draw.text((5, y - 6), f"{loss:.4f}", fill="black")
        step = round(x0 + (x1 - x0) * i / 4)
        x, _ = to_pixel(step, y0)
        draw.text((x - 10, height - bottom + 8), f"{step:.0f}", fill="black")
    draw.text((width // 2 - 10, height - 18), "step", fill="black")
    for (name, values), colour, legend_y in zip(series.items(), [(31, 119, 180), (255, 127, 14)], (8, 20)):
        values = [p for p in values if math.isfinite(p[1])]
        if not values:
            continue
        pixels = [to_pixel(*p) for p in values]
        if len(pixels) > 1:
            draw.line(pixels, fill=colour, width=2)
        for x, y in pixels if len(pixels) < 50 else []:
            draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=colour)
        draw.line([width - 150, legend_y + 6, width - 125, legend_y + 6], fill=colour, width=3)
        draw.text((width - 120, legend_y), name, fill="black")
    path = Path(path)
    save_image(path, image)
    return path


def save_loss_history(log_history: list[dict], output_dir: str | os.PathLike) -> None:
    """A training's ``log_history.json`` and its ``loss_curve.png`` in ``output_dir``."""

    output_dir = Path(output_dir)
    write_json(output_dir / "log_history.json", log_history)
    plot_loss_curve(log_history, output_dir / "loss_curve.png")


__all__ = ["plot_loss_curve", "save_loss_history"]
