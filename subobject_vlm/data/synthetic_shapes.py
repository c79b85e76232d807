"""Synthetic pictures of one coloured shape ("a red square") as LLaVA records: the smoke-test data of VLM
training, learnable in a few CPU steps."""

from __future__ import annotations

import os
import random
from pathlib import Path

from ..atomic import save_image, write_json

SYNTHETIC_COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 180, 40),
    "blue": (30, 60, 220),
    "yellow": (240, 220, 30),
    "white": (245, 245, 245),
}
SYNTHETIC_SHAPES = ("square", "circle", "triangle")
SYNTHETIC_PROMPT = "What is in the image?"


def make_synthetic_shapes(
    out_dir: str | os.PathLike, num_images: int = 32, size: int = 64, seed: int = 0
) -> Path:
    """Write ``num_images`` pictures of one coloured shape on a dark background and a LLaVA JSON about them.

    The answer to ``"What is in the image?"`` is e.g. ``"a red square"``. Returns the JSON path
    (``out_dir/data.json``; images in ``out_dir/images``). Deterministic for a given seed.
    """
    from PIL import Image, ImageDraw

    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    records = []
    for i in range(num_images):
        colour = rng.choice(sorted(SYNTHETIC_COLOURS))
        shape = rng.choice(SYNTHETIC_SHAPES)
        background = tuple(rng.randint(0, 60) for _ in range(3))
        image = Image.new("RGB", (size, size), background)
        draw = ImageDraw.Draw(image)
        half = rng.randint(size // 5, size // 3)
        cx, cy = rng.randint(half, size - half), rng.randint(half, size - half)
        box = [cx - half, cy - half, cx + half, cy + half]
        fill = SYNTHETIC_COLOURS[colour]
        if shape == "square":
            draw.rectangle(box, fill=fill)
        elif shape == "circle":
            draw.ellipse(box, fill=fill)
        else:
            draw.polygon([(cx, cy - half), (cx - half, cy + half), (cx + half, cy + half)], fill=fill)
        name = f"images/{i:04d}.png"
        save_image(out_dir / name, image)
        records.append(
            {
                "image": name,
                "conversations": [
                    {"from": "human", "value": f"<image>\n{SYNTHETIC_PROMPT}"},
                    {"from": "gpt", "value": f"a {colour} {shape}"},
                ],
            }
        )
    path = out_dir / "data.json"
    write_json(path, records)
    return path


def synthetic_vocabulary() -> list[str]:
    """Every word the synthetic data and the default chat template produce (for a tiny word-level tokenizer)."""
    prompt_words = SYNTHETIC_PROMPT.replace("?", " ?").split()
    return ["USER", "ASSISTANT", ":", "a", *prompt_words, *sorted(SYNTHETIC_COLOURS), *SYNTHETIC_SHAPES]


__all__ = [
    "SYNTHETIC_COLOURS",
    "SYNTHETIC_PROMPT",
    "SYNTHETIC_SHAPES",
    "make_synthetic_shapes",
    "synthetic_vocabulary",
]
