"""One run: train from a seed on the same batches as every other tokenizer, evaluate on val as it goes."""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from .config import ComparisonConfig
from .data import Split, TokenizedSplit, collate
from .model import build_model


@dataclass
class RunData:
    """What one run needs of a split: tokens, label maps, counts and the pixels (shared by every run)."""

    split: Split
    tokens: TokenizedSplit
    label_maps: np.ndarray  # (N_images, h, w) int16
    num_tokens: np.ndarray  # (N_images,) int
    pixel_values: Any  # (N_images, 3, S, S) float32 tensor
    attribute_ids: Any = None  # (A,) int64 token ids of attribute words, or None
    reference_ids: Any = None  # (R,) int64 token ids after which attribute words are copies ("the")


def evaluate(model, data: RunData, batch_size: int, image_token_id: int, pad_token_id: int, device) -> dict:
    """Mean NLL per caption token (``val_loss``), its ``exp`` (``val_perplexity``), exact-match accuracy of the
    answers to questions (teacher forcing: every answer token the arg-max, so greedy decoding gives it), and
    ``attribute_accuracy``: the arg-max is right on the caption's attribute words (``data.attribute_ids``) except
    copies: a word the caption already said, repeated within two tokens after a reference word such as "the"
    ("a red cube ... left of the red cube"). A word said for the first time always counts ("at the top left")."""
    import torch

    model.eval()
    nll_sum, token_count, attribute_hits, attribute_count = 0.0, 0, 0, 0
    correct: dict[str, list[bool]] = {}
    with torch.no_grad():
        for start in range(0, len(data.tokens.input_ids), batch_size):
            indices = list(range(start, min(start + batch_size, len(data.tokens.input_ids))))
            batch = collate(data.tokens, data.split, data.label_maps, data.num_tokens, data.pixel_values, indices,
                            image_token_id, pad_token_id)  # fmt: skip
            batch = {k: v.to(device) for k, v in batch.items()}
            labels = batch.pop("labels")
            logits = model(**batch).logits[:, :-1].float()  # (B, L-1, V)
            targets = labels[:, 1:]  # (B, L-1)
            valid = targets != -100
            nll = torch.nn.functional.cross_entropy(
                logits.transpose(1, 2), targets.clamp(min=0), reduction="none"
            )  # (B, L-1)
            hit = (logits.argmax(-1) == targets) | ~valid  # (B, L-1)
            if data.attribute_ids is not None:
                ids = targets.clamp(min=0)
                before = torch.nn.functional.pad(ids, (2, 0), value=-1)  # (B, L+1): two previous targets
                after_reference = torch.isin(before[:, 1:-1], data.reference_ids) | torch.isin(
                    before[:, :-2], data.reference_ids
                )
                answer = torch.where(valid, ids, -1)  # (B, L-1) answer tokens, -1 elsewhere
                earlier = torch.ones(
                    answer.shape[1], answer.shape[1], dtype=torch.bool, device=ids.device
                ).tril(-1)
                repeated = ((answer[:, :, None] == answer[:, None, :]) & earlier).any(-1)  # (B, L-1)
                copied = after_reference & repeated  # "left of the red cube" after "a red cube": a copy
                caption_rows = torch.tensor(
                    [data.split.tasks[i] == "caption" for i in indices], device=ids.device
                )
                named = (
                    torch.isin(ids, data.attribute_ids) & valid & ~copied & caption_rows[:, None]
                )  # (B, L-1)
                attribute_hits += int((hit & named).sum())
                attribute_count += int(named.sum())
            for row, i in enumerate(indices):
                task = data.split.tasks[i]
                if task == "caption":
                    nll_sum += float(nll[row][valid[row]].sum())
                    token_count += int(valid[row].sum())
                else:
                    correct.setdefault(task, []).append(bool(hit[row].all()))
    model.train()
    val_loss = nll_sum / token_count if token_count else float("nan")
    by_task = {task: float(np.mean(hits)) for task, hits in sorted(correct.items())}
    accuracy = float(np.mean([h for hits in correct.values() for h in hits])) if correct else float("nan")
    attribute_accuracy = attribute_hits / attribute_count if attribute_count else float("nan")
    return {"val_loss": val_loss, "val_perplexity": math.exp(val_loss) if token_count else float("nan"),
            "accuracy": accuracy, "accuracy_by_task": by_task, "attribute_accuracy": attribute_accuracy}  # fmt: skip


def train_run(
    config: ComparisonConfig, tokenizer, train: RunData, val: RunData, seed: int, desc: str
) -> dict:
    """Train one model from scratch on ``train`` and evaluate it on ``val`` every ``eval_every`` steps: the last
    evaluation's metrics, the lowest val loss (``best_val_loss``, rounded as in ``curve``) and its ``best_step``.

    The initial weights and the batch order depend on ``seed`` only, so runs that differ in the tokenizer see
    the same samples in the same order from the same starting point.
    """
    import torch
    from tqdm import tqdm
    from transformers import get_cosine_schedule_with_warmup

    section = config.training
    device = torch.device(config.device)
    max_tokens = max(int(train.num_tokens.max()), int(val.num_tokens.max()), 1)
    torch.manual_seed(seed)
    model = build_model(config, tokenizer, max_tokens).to(device)
    model.train()
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and p.requires_grad]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2 and p.requires_grad]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": section.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=section.learning_rate,
    )
    schedule = get_cosine_schedule_with_warmup(optimizer, section.warmup_steps, section.steps)
    image_token_id, pad_token_id = model.config.image_token_id, tokenizer.pad_token_id
    order = torch.Generator().manual_seed(seed)
    num_samples = len(train.tokens.input_ids)
    queue: list[int] = []
    curve, step_times = [], []
    train_seconds = 0.0
    progress = tqdm(range(1, section.steps + 1), desc=desc, unit="step", file=sys.stderr, leave=False)
    for step in progress:
        while len(queue) < section.batch_size:  # epochs of a seeded permutation
            queue += torch.randperm(num_samples, generator=order).tolist()
        indices, queue = queue[: section.batch_size], queue[section.batch_size :]
        start = time.perf_counter()
        batch = collate(train.tokens, train.split, train.label_maps, train.num_tokens, train.pixel_values, indices,
                        image_token_id, pad_token_id)  # fmt: skip
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=section.bf16):
            loss = model(**{k: v.to(device) for k, v in batch.items()}).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), section.max_grad_norm)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
        train_seconds += elapsed
        step_times.append(elapsed)
        progress.set_postfix(loss=f"{loss.item():.3f}")
        if step % section.eval_every == 0 or step == section.steps:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=section.bf16):
                metrics = evaluate(model, val, section.eval_batch_size, image_token_id, pad_token_id, device)
            curve.append([step, round(train_seconds, 3), round(metrics["val_loss"], 5)])
    progress.close()
    steady = step_times[min(5, len(step_times) - 1) :]  # the first steps warm up allocators and caches
    losses = np.array([point[2] for point in curve], dtype=float)
    best = int(np.nanargmin(losses)) if np.isfinite(losses).any() else len(curve) - 1
    return {**metrics, "best_val_loss": curve[best][2], "best_step": curve[best][0],
            "train_seconds": round(train_seconds, 2), "step_seconds": float(np.median(steady)), "curve": curve}  # fmt: skip
