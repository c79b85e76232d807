"""The driver: every (tokenizer, budget, seed) not done yet, then the table and the figures; the CLI command."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from ...atomic import write_text
from .config import ComparisonConfig, budgets_of, load_config
from .data import (
    attribute_token_ids,
    build_text_tokenizer,
    load_split,
    segment_split,
    settings_digest,
    token_counts,
    tokenize_split,
)
from .results import append_result, experiment_runs, read_results, results_markdown
from .train import RunData, train_run

EXAMPLES_SHOWN = 4  # val images drawn in tokens_examples.png
MAX_EPOCHS = 10  # more passes over the training set than this are warned about (over-fitting)


def _run_order(config: ComparisonConfig) -> list[str]:
    """Tokenizers others match come first."""
    return sorted(config.tokenizers, key=lambda name: config.tokenizers[name].get("match") is not None)


def compare_tokenizers(config: str | os.PathLike | dict, base_dir: str | os.PathLike | None = None) -> Path:
    """Run every (tokenizer, budget, seed) of ``config`` not already in ``results.jsonl``; write the table and
    the plots; return the output folder. Raises ``ConfigError`` / ``DataError`` before any training.

    ``base_dir``: the folder relative data paths are taken from (default: the config file's folder, or the
    working directory for a dict); see :func:`load_config`."""
    import cv2
    import torch

    from ...image_processing_subobject import SubobjectImageProcessor
    from ...processing_subobject_llava import DEFAULT_CHAT_TEMPLATE, SubobjectLlavaProcessor
    from ..plots import plot_token_efficiency, plot_tokenizer_examples

    config = load_config(config, base_dir)
    if config.torch_threads:
        torch.set_num_threads(config.torch_threads)
    out_dir = Path(config.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fingerprint = settings_digest({k: v for k, v in asdict(config).items() if k not in ("output_dir", "seeds", "budgets",
                                                                                    "tokenizers", "torch_threads")})  # fmt: skip
    results_path = out_dir / "results.jsonl"
    done = {(r["tokenizer"], r["budget"], r["seed"], r.get("tokenizer_key")) for r in read_results(results_path)
            if r.get("fingerprint") == fingerprint}  # fmt: skip

    splits = {s: load_split(config, s, out_dir / "data") for s in ("train", "val")}
    epochs = config.training.steps * config.training.batch_size / len(splits["train"].conversations)
    if epochs > MAX_EPOCHS:
        print(f"warning: training.steps x batch_size is {epochs:.1f} epochs of the {len(splits['train'].conversations)} "
              f"training samples (> {MAX_EPOCHS}): the last val loss may measure over-fitting; compare best_val_loss "
              "and best_step in results.jsonl", file=sys.stderr)  # fmt: skip
    tokenizer = build_text_tokenizer(config, splits["train"])
    pixel_processor = SubobjectImageProcessor(
        size={"height": config.image_size, "width": config.image_size}, do_segment=False
    )
    text_processor = SubobjectLlavaProcessor(
        image_processor=pixel_processor, tokenizer=tokenizer, chat_template=DEFAULT_CHAT_TEMPLATE
    )
    tokens = {s: tokenize_split(text_processor, splits[s], config.max_length) for s in splits}
    word_ids = attribute_token_ids(config, tokenizer)
    pixels = {s: torch.cat([pixel_processor.pixel_values(list(splits[s].images[i : i + 64]))
                            for i in range(0, len(splits[s].images), 64)]) for s in splits}  # fmt: skip

    # one processor per boundary model: its boundary maps are computed once for every budget and EPOC setting
    cache_size = sum(len(x.images) for x in splits.values()) + 1
    processors: dict[str, Any] = {}

    def processor_for(name: str):
        spec = config.tokenizers[name]
        key = settings_digest(spec["boundary_model"], spec.get("boundary_model_options"))
        return processors.setdefault(key, SubobjectImageProcessor(cache_size=cache_size))

    shown = min(EXAMPLES_SHOWN, len(splits["val"].images))
    examples: dict[
        str, np.ndarray
    ] = {}  # "name @ budget" -> (shown, h, w) label maps of the first val images
    for name in _run_order(config):
        spec = config.tokenizers[name]
        for budget in budgets_of(config, name):
            data = {}
            for s in ("train", "val"):
                counts = None
                if spec.get("match"):
                    matched = segment_split(config, spec["match"], budget, s, splits[s], out_dir / "segmentations",
                                            processor=processor_for(spec["match"]))  # fmt: skip
                    counts = token_counts(matched)
                label_maps = segment_split(config, name, budget, s, splits[s], out_dir / "segmentations",
                                           counts=counts, processor=processor_for(name))  # fmt: skip
                num_tokens = token_counts(label_maps)
                data[s] = RunData(splits[s], tokens[s], label_maps, num_tokens, pixels[s], *word_ids)
            examples[f"{name} @ {budget}"] = data["val"].label_maps[:shown]
            tokenizer_key = settings_digest(spec)  # a run is redone when its tokenizer's settings change
            for seed in config.seeds:
                if (name, budget, seed, tokenizer_key) in done:
                    continue
                started = time.perf_counter()
                result = train_run(
                    config, tokenizer, data["train"], data["val"], seed, f"{name}@{budget} seed {seed}"
                )
                result["wall_seconds"] = round(time.perf_counter() - started, 2)  # training + evaluations
                record = {"tokenizer": name, "budget": budget, "seed": seed,
                          "mean_tokens": round(float(data["train"].num_tokens.mean()), 3),
                          "val_mean_tokens": round(float(data["val"].num_tokens.mean()), 3),
                          "steps": config.training.steps, "batch_size": config.training.batch_size,
                          **result, "fingerprint": fingerprint, "tokenizer_key": tokenizer_key}  # fmt: skip
                append_result(results_path, record)
                print(f"{name}@{budget} seed {seed}: {record['mean_tokens']:.1f} tokens/image, val loss "
                      f"{record['val_loss']:.4f}, perplexity {record['val_perplexity']:.3f}, accuracy "
                      f"{record['accuracy']:.3f}, {record['step_seconds'] * 1000:.1f} ms/step", file=sys.stderr)  # fmt: skip
    # every run of this experiment in results.jsonl: split invocations (or machines' files appended) merge
    keys = {name: settings_digest(spec) for name, spec in config.tokenizers.items()}
    runs = experiment_runs(read_results(results_path), fingerprint, keys)
    write_text(out_dir / "results.md", results_markdown(runs))
    plot_token_efficiency(runs, out_dir)
    small = [
        cv2.resize(image, (config.label_size,) * 2, interpolation=cv2.INTER_AREA)
        for image in splits["val"].images[:shown]
    ]
    plot_tokenizer_examples(np.stack(small), examples, out_dir / "tokens_examples.png")
    return out_dir
