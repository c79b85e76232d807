"""Training-step cost of subobject tokens vs patch tokens at exactly the same token counts.

    python benchmarks/bench_step_time.py [--images 256] [--steps 40] [--budget 64]

Builds the quick preset's model (configs/compare_quick.yaml) and times full training steps (forward, backward,
optimizer) on the same batches twice: once with our label maps (embedded default, seeds="minima"), once with
patch grids holding exactly the same number of tokens per image. Sequence lengths are then identical, so the
ratio isolates what region tokens cost: mask pooling, boxes and shapes from an irregular label map instead of a
grid. The two are interleaved step by step so that machine load hits both alike; the median ratio is reported.
Writes ``benchmarks/results/step_time.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from subobject_vlm.data.clevr_like import generate_scene
from subobject_vlm.evaluation.token_efficiency import (
    RunData,
    Split,
    build_model,
    build_text_tokenizer,
    collate,
    load_config,
    token_counts,
    tokenize_split,
)
from subobject_vlm.image_processing_subobject import SubobjectImageProcessor
from subobject_vlm.processing_subobject_llava import DEFAULT_CHAT_TEMPLATE, SubobjectLlavaProcessor

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--budget", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "step_time.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = load_config(ROOT / "configs" / "compare_quick.yaml")
    size = config.image_size

    options = {k: v for k, v in config.data["synthetic"].items() if k in ("min_objects", "max_objects")}
    scenes = [generate_scene(0, "train", i, size, **options) for i in range(args.images)]
    from subobject_vlm.data.clevr_like import CAPTION_PROMPT, caption

    split = Split(
        images=np.stack([s.image for s in scenes]),
        image_of_sample=np.arange(len(scenes)),
        conversations=[
            [
                {"from": "human", "value": f"<image>\n{CAPTION_PROMPT}"},
                {"from": "gpt", "value": caption(s.objects)},
            ]
            for s in scenes
        ],
        tasks=["caption"] * len(scenes),
    )
    ours_settings = {k: v for k, v in config.tokenizers["ours-minima"].items() if k != "match"}
    label_size = {"height": config.label_size, "width": config.label_size}
    processor = SubobjectImageProcessor(cache_size=len(scenes) + 1, size={"height": size, "width": size})
    ours = np.stack(
        processor.segment(list(split.images), **ours_settings, max_tokens=args.budget, label_size=label_size)
    )
    counts = token_counts(ours)
    patches = np.stack(
        [
            processor.segment([image], boundary_model="patch", max_tokens=int(n), label_size=label_size)[0]
            for image, n in zip(split.images, counts)
        ]
    )
    assert np.array_equal(token_counts(patches), counts)

    tokenizer = build_text_tokenizer(config, split)
    text_processor = SubobjectLlavaProcessor(
        image_processor=processor, tokenizer=tokenizer, chat_template=DEFAULT_CHAT_TEMPLATE
    )
    tokens = tokenize_split(text_processor, split, None)
    pixels = processor.pixel_values(list(split.images))
    runs = {
        name: RunData(
            split,
            tokens,
            maps.astype(np.int16),
            token_counts(maps),
            pixels,
        )
        for name, maps in (("patch", patches), ("ours", ours))
    }
    models, optimizers = {}, {}
    for name in runs:
        torch.manual_seed(0)
        models[name] = build_model(config, tokenizer, int(counts.max())).train()
        optimizers[name] = torch.optim.AdamW(models[name].parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    times: dict[str, list[float]] = {name: [] for name in runs}
    batch_size = config.training.batch_size
    for step in range(args.steps + 3):
        indices = rng.choice(len(scenes), batch_size, replace=False).tolist()
        for name in ("patch", "ours") if step % 2 else ("ours", "patch"):
            data, model = runs[name], models[name]
            start = time.perf_counter()
            batch = collate(
                tokens,
                split,
                data.label_maps,
                data.num_tokens,
                data.pixel_values,
                indices,
                model.config.image_token_id,
                tokenizer.pad_token_id,
            )
            model(**batch).loss.backward()
            optimizers[name].step()
            optimizers[name].zero_grad(set_to_none=True)
            if step >= 3:  # warm-up steps excluded
                times[name].append(time.perf_counter() - start)
    ratio = np.array(times["ours"]) / np.array(times["patch"])
    result = {
        "images": args.images,
        "steps": args.steps,
        "batch_size": batch_size,
        "budget": args.budget,
        "mean_tokens": float(counts.mean()),
        "threads": args.threads,
        "patch_median_s": float(np.median(times["patch"])),
        "ours_median_s": float(np.median(times["ours"])),
        "ratio_median": float(np.median(ratio)),
        "ratio_of_medians": float(np.median(times["ours"]) / np.median(times["patch"])),
    }
    print(json.dumps(result, indent=1))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
