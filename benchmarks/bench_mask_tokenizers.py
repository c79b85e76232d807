"""What the mask-model tokenizers cost against ours: images per second and peak memory on the same photos.

Each tokenizer runs in its own process (so that its peak resident memory is its own) on scikit-image's photos at
their own sizes, and the ratio to the default tokenizer (``Segmenter(SegmentationSettings())``: the embedded
EdgeNet + EPOC, 128 tokens) is taken within the same run, on the same machine and thread count:

- ``tiny-*``: the tiny random models of ``subobject_vlm.tiny_mask_models`` (the tests' models): the cost of the
  pipeline around a model (point grids, mask post-processing, masks -> label map), not of a real model;
- ``real-*``: models built from the real public configs (``tests/data/mask_configs``, random weights) with the
  published processors' sizes: SAM and SAM-HQ ViT-B, SAM 2.1 Hiera-T and EdgeTAM at 1024 px with SAM's default
  automatic-mask knobs (32 x 32 points, 64 a batch) but the IoU filter off (``SAM_OPTIONS``), Mask2Former Swin-T
  (shortest side 384) and OneFormer Swin-T (512).
  Random weights: the model's compute is the real one, but its masks are not, so what depends on the masks
  (how many pass SAM's IoU / stability filter and are run-length coded, the budget merge) is not measured as
  trained weights would make it.

    python benchmarks/bench_mask_tokenizers.py            # writes benchmarks/results/mask_tokenizers.json
    python benchmarks/bench_mask_tokenizers.py --skip-real   # tiny models only (a minute)
    python benchmarks/bench_mask_tokenizers.py --device cuda  # every model on the GPU (ours too): ..._cuda.json

On a GPU the peak memory column is the GPU's (``torch.cuda.max_memory_allocated``), not the process's.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "tests" / "data" / "mask_configs"
MAX_TOKENS = 128
# SAM's IoU filter off: every candidate mask (3 per point) is upsampled and scored, as if all passed it. Random
# weights make the filter's choice meaningless; this is the upper bound of SAM's post-processing cost (with
# trained weights and the default 0.88, the masks it drops are never upsampled: see SamTokenizer).
SAM_OPTIONS = {"pred_iou_thresh": 0.0}
SAM_STYLE = ("sam", "sam_hq", "sam2", "edgetam")  # automatic masks from a point grid
# the published processors' input sizes (their preprocessor_config.json), for the real-size models
REAL = {
    "real-sam-vit-base": ("sam", "sam-vit-base.json", {}),
    "real-sam-hq-vit-base": ("sam_hq", "sam-hq-vit-base.json", {}),
    "real-sam2.1-hiera-tiny": ("sam2", "sam2.1-hiera-tiny.json", {}),
    "real-edgetam": ("edgetam", "edgetam.json", {}),
    "real-mask2former-swin-tiny": (
        "mask2former",
        "mask2former-swin-tiny-coco-panoptic.json",
        {"size": {"shortest_edge": 384, "longest_edge": 1333}, "size_divisor": 32},
    ),
    "real-oneformer-swin-tiny": (
        "oneformer",
        "oneformer_ade20k_swin_tiny.json",
        {"size": {"shortest_edge": 512, "longest_edge": 2048}},
    ),
}


def photos() -> list[np.ndarray]:
    """scikit-image's colour photos (shipped with it: no download)."""
    from skimage import data

    return [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]


def real_tokenizer(kind: str, config_file: str, processor_size: dict, device: str = "cpu"):
    """A tokenizer around a random-weight model of a real public config and its published processor sizes."""
    import torch
    import transformers

    from subobject_vlm.segmentation import mask_models
    from subobject_vlm.tiny import tiny_tokenizer

    tokenizer_class = {
        "sam": mask_models.SamTokenizer,
        "sam_hq": mask_models.SamHqTokenizer,
        "sam2": mask_models.Sam2Tokenizer,
        "edgetam": mask_models.EdgeTamTokenizer,
        "mask2former": mask_models.Mask2FormerTokenizer,
        "oneformer": mask_models.OneFormerTokenizer,
    }[kind]
    model_class = getattr(transformers, tokenizer_class._model_class)
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "config.json").write_text((CONFIGS / config_file).read_text())
        config = model_class.config_class.from_pretrained(folder)
    torch.manual_seed(0)
    model = model_class(config).eval().to(device)
    if kind in ("sam", "sam_hq"):
        processor = transformers.SamImageProcessor()
    elif kind in ("sam2", "edgetam"):
        processor = transformers.Sam2ImageProcessor()
    elif kind == "mask2former":
        processor = transformers.Mask2FormerImageProcessor(**processor_size)
    else:  # the task text only: any tokenizer giving task_seq_len ids times the same
        processor = transformers.OneFormerProcessor(
            image_processor=transformers.OneFormerImageProcessor(**processor_size),
            tokenizer=tiny_tokenizer(words=["the", "task", "is", "panoptic"]),
            max_seq_length=config.text_encoder_context_length,
            task_seq_length=config.task_seq_len,
        )
    options = SAM_OPTIONS if kind in SAM_STYLE else {}
    return tokenizer_class(model, processor, checkpoint=f"{config_file} (random weights)", **options)


def run_one(name: str, images: int, repeats: int, tiny_root: str, device: str = "cpu") -> dict:
    """Time one tokenizer in this process on ``device``: seconds per image (after one warm-up image) and peak
    memory (the process's on the CPU, the GPU's on CUDA)."""
    import torch

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
    from subobject_vlm.segmentation import SegmentationSettings, Segmenter, mask_models

    batch = photos()[:images]
    extra = {}
    if name == "default":
        settings = SegmentationSettings(max_tokens=MAX_TOKENS, boundary_model_options=(("device", device),))
        segmenter = Segmenter(settings, cache_size=0)

        def label_maps(images):
            return segmenter.label_maps(images)

    elif name.startswith("tiny-"):
        kind = name.removeprefix("tiny-")
        options = SAM_OPTIONS if kind in SAM_STYLE else {}
        create = getattr(mask_models, f"create_{kind}_tokenizer")
        tokenizer = create(str(Path(tiny_root) / kind), device=device, **options)

        def label_maps(images):
            return tokenizer.label_maps(images, MAX_TOKENS)

    else:
        tokenizer = real_tokenizer(*REAL[name], device=device)

        def label_maps(images):
            return tokenizer.label_maps(images, MAX_TOKENS)

        if REAL[name][0] in SAM_STYLE:  # the image encoder alone: the rest is prompts and post-processing
            pixels = tokenizer.processor(
                images=batch[:1], return_tensors="pt", input_data_format="channels_last"
            )
            pixel_values = pixels["pixel_values"].to(device)
            with torch.inference_mode():
                if device != "cpu":  # the first CUDA call's kernel set-up out of the timing
                    tokenizer.model.get_image_embeddings(pixel_values)
                    torch.cuda.synchronize()
                start = time.perf_counter()
                tokenizer.model.get_image_embeddings(pixel_values)
                if device != "cpu":
                    torch.cuda.synchronize()
            extra["image_encoder_seconds"] = time.perf_counter() - start

    # warm-up: loading and first-call costs out of the timing (a real-size model's costs minutes on a CPU)
    if repeats > 1 or name == "default" or device != "cpu":
        label_maps(batch[:1])
    tokens, start = [], time.perf_counter()
    for _ in range(repeats):
        for image in batch:
            tokens.append(int(label_maps([image])[0].max()) + 1)
    seconds = (time.perf_counter() - start) / (repeats * len(batch))
    if device == "cpu":
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux -> MB
    else:
        peak = torch.cuda.max_memory_allocated() / 2**20
    return {
        "seconds_per_image": seconds,
        "images_per_second": 1 / seconds,
        "peak_rss_mb" if device == "cpu" else "peak_cuda_mb": peak,
        "mean_tokens": float(np.mean(tokens)),
        "images": len(batch),
        "repeats": repeats,
        **extra,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3, help="passes over the photos (tiny models, ours)")
    parser.add_argument("--skip-real", action="store_true", help="tiny models only")
    parser.add_argument("--real-images", type=int, default=1, help="photos for each real-size model")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (every tokenizer, ours too)")
    parser.add_argument("--out", default=None, help="default: benchmarks/results/mask_tokenizers[_cuda].json")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # the child process: one tokenizer
    parser.add_argument("--images", type=int, default=4, help=argparse.SUPPRESS)
    parser.add_argument("--tiny-root", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(run_one(args.one, args.images, args.repeats, args.tiny_root, args.device)))
        return

    from subobject_vlm.tiny_mask_models import MASK_KINDS, save_tiny_mask_model

    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": os.environ.get("BENCH_THREADS", "1")}
    results = {}
    with tempfile.TemporaryDirectory() as tiny_root:
        for kind in MASK_KINDS:
            save_tiny_mask_model(kind, Path(tiny_root) / kind)
        runs = [("default", 4, args.repeats)] + [(f"tiny-{kind}", 4, args.repeats) for kind in MASK_KINDS]
        if not args.skip_real:
            runs += [("default-1", args.real_images, 1)] + [(name, args.real_images, 1) for name in REAL]
        for name, images, repeats in runs:
            command = [sys.executable, __file__, "--one", name.removesuffix("-1"), "--images", str(images)]
            command += ["--repeats", str(repeats), "--tiny-root", tiny_root, "--device", args.device]
            started = time.perf_counter()
            done = subprocess.run(command, env=env, capture_output=True, text=True)
            if done.returncode:
                raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
            results[name] = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"{name}: {results[name]} ({time.perf_counter() - started:.0f} s)", flush=True)
    for name, row in results.items():
        reference = results["default-1" if name.startswith("real-") else "default"]
        row["slowdown_vs_default"] = row["seconds_per_image"] / reference["seconds_per_image"]
    print(f"\n{'tokenizer':>28} | {'img/s':>7} | {'x slower':>8} | {'peak MB':>7} | tokens")
    for name, row in results.items():
        print(
            f"{name:>28} | {row['images_per_second']:>7.3f} | {row['slowdown_vs_default']:>8.1f} | "
            f"{row.get('peak_rss_mb', row.get('peak_cuda_mb')):>7.0f} | {row['mean_tokens']:.0f}"
        )
    record = {
        "device": args.device,
        "threads": int(env["OMP_NUM_THREADS"]),
        "max_tokens": MAX_TOKENS,
        "photos": "skimage.data astronaut, coffee, chelsea, rocket (first --real-images for the real-size rows)",
        "results": results,
    }
    suffix = "" if args.device == "cpu" else f"_{args.device.split(':')[0]}"
    out = Path(args.out or REPO / "benchmarks" / "results" / f"mask_tokenizers{suffix}.json")
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
