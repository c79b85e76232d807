"""One line per VLM family: conversion time and peak memory of a tiny source, and the cost of region features
against the source model's own image features on the same image.

For each family a tiny random source (``subobject_vlm.tiny.save_tiny_source_vlm``: width 32, one layer per
tower) is saved and converted in its own subprocess; peak memory is that subprocess's peak RSS growth during
the conversion (Linux ``VmHWM`` after resetting it through ``/proc/self/clear_refs``). Image features: the
best of 20 runs of ``get_image_features`` on one image at the converted processor's side, for the converted
model (tower + region pooling of a 6-region label map + embedding) and for the source (tower + its own
projector, at its own input convention: LLaVA-NeXT/OneVision any-resolution tiles, Idefics3 image splits,
Qwen2-VL flat patches). With towers this small the ratio shows the overhead of pooling, not a real model's
balance (there the tower dominates both).

Run: ``python benchmarks/bench_families.py`` -> prints a table, writes ``benchmarks/results/families.json``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "families.json"


def _peak_rss_reset() -> None:
    Path("/proc/self/clear_refs").write_text("5")


def _peak_rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def _source_image_features(model_type: str, source, pixels):
    """The source's own image features for (1, 3, S, S) pixels, in its own input convention."""
    import torch

    inner = source.model
    if model_type in ("llava_next", "llava_onevision"):
        side = pixels.shape[-1]
        tiles = torch.cat([pixels, pixels])[None]  # (1, base + one any-resolution tile, 3, S, S)
        return inner.get_image_features(tiles, image_sizes=torch.tensor([[side, side]]))
    if model_type in ("idefics3", "smolvlm"):
        return inner.get_image_features(pixels[:, None])  # one image, no split, no padding
    if model_type in ("qwen2_vl", "qwen2_5_vl"):
        from transformers import Qwen2VLImageProcessor

        vision = source.config.vision_config
        processor = Qwen2VLImageProcessor(patch_size=vision.patch_size, merge_size=vision.spatial_merge_size)
        flat, grid_h, grid_w = processor.patchify(pixels, vision.patch_size, vision.spatial_merge_size, 2)
        return inner.get_image_features(flat[0], torch.tensor([[1, grid_h, grid_w]]))
    return inner.get_image_features(pixels)


def _best(function, runs: int = 20) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def measure(model_type: str) -> dict:
    """Convert a tiny ``model_type`` source and time both image-feature paths (runs in a subprocess)."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from subobject_vlm.conversion import convert_checkpoint
    from subobject_vlm.tiny import save_tiny_source_vlm

    torch.set_num_threads(1)
    folder = Path(tempfile.mkdtemp())
    torch.manual_seed(0)
    save_tiny_source_vlm(model_type, folder / "source")
    before = _peak_rss()
    _peak_rss_reset()
    start = time.perf_counter()
    convert_checkpoint(folder / "source", folder / "out", max_tokens=6, boundary_model="patch")
    seconds = time.perf_counter() - start
    peak = max(_peak_rss() - before, 0)

    source = AutoModelForImageTextToText.from_pretrained(folder / "source").eval()
    model = AutoModelForImageTextToText.from_pretrained(folder / "out").eval()
    side = AutoProcessor.from_pretrained(folder / "out").image_processor.size["height"]
    pixels = torch.randn(1, 3, side, side, generator=torch.Generator().manual_seed(0))
    labels = (torch.arange(side)[None, :, None] * 3 // side) * 2 + (
        torch.arange(side)[None, None] * 2 // side
    )
    with torch.no_grad():
        ours = _best(lambda: model.get_image_features(pixels, labels))
        theirs = _best(lambda: _source_image_features(model_type, source, pixels))
    return {
        "model_type": model_type,
        "convert_s": round(seconds, 3),
        "convert_peak_mib": round(peak / 2**20, 1),
        "image_side": side,
        "regions_ms": round(ours * 1e3, 2),
        "source_features_ms": round(theirs * 1e3, 2),
        "ratio": round(ours / theirs, 2),
    }


def main() -> None:
    from subobject_vlm.families import FAMILIES

    if len(sys.argv) == 3 and sys.argv[1] == "--one":
        print(json.dumps(measure(sys.argv[2])))
        return
    rows = []
    for model_type in [t for family in FAMILIES for t in family.model_types if t != "llava"]:
        out = subprocess.run([sys.executable, __file__, "--one", model_type], capture_output=True, text=True)
        if out.returncode:
            raise SystemExit(f"{model_type}: {out.stderr.strip().splitlines()[-1]}")
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        row = rows[-1]
        print(
            f"{row['model_type']:16s} convert {row['convert_s']:6.2f} s  peak +{row['convert_peak_mib']:6.1f} MiB  "
            f"features at {row['image_side']} px: regions {row['regions_ms']:6.2f} ms / source "
            f"{row['source_features_ms']:6.2f} ms = {row['ratio']:.2f}"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
