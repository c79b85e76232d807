"""One run: train from a seed on the same batches as every other tokenizer, evaluate on val as it goes; or
evaluate the final weights a run saved."""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...atomic import atomic_open
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
    group_ids: dict[str, Any] | None = None  # attribute group -> (G,) int64 token ids of its words

    def batch(self, indices: list[int], image_token_id: int, pad_token_id: int) -> dict:
        """The samples ``indices`` as a model batch (:func:`collate`)."""
        arrays = self.label_maps, self.num_tokens, self.pixel_values
        return collate(self.tokens, self.split, *arrays, indices, image_token_id, pad_token_id)


class _Counts:
    """Hits and counts of a score summed over batches: ``value`` is their ratio, NaN without any."""

    def __init__(self) -> None:
        self.hits, self.count = 0, 0

    def add(self, hit, mask) -> None:
        self.hits += int((hit & mask).sum())
        self.count += int(mask.sum())

    @property
    def value(self) -> float:
        return self.hits / self.count if self.count else float("nan")


def _scored_attributes(targets, valid, data: RunData, indices: list[int]):
    """(B, L-1) bool: the target tokens ``attribute_accuracy`` scores: attribute words of caption answers,
    except copies (a word the caption already said, within two tokens after a reference word)."""
    import torch

    ids = targets.clamp(min=0)
    before = torch.nn.functional.pad(ids, (2, 0), value=-1)  # (B, L+1): two previous targets
    after_reference = torch.isin(before[:, 1:-1], data.reference_ids) | torch.isin(
        before[:, :-2], data.reference_ids
    )
    answer = torch.where(valid, ids, -1)  # (B, L-1) answer tokens, -1 elsewhere
    earlier = torch.ones(answer.shape[1], answer.shape[1], dtype=torch.bool, device=ids.device).tril(-1)
    repeated = ((answer[:, :, None] == answer[:, None, :]) & earlier).any(-1)  # (B, L-1)
    copied = after_reference & repeated  # "left of the red cube" after "a red cube": a copy
    caption_rows = torch.tensor([data.split.tasks[i] == "caption" for i in indices], device=ids.device)
    return torch.isin(ids, data.attribute_ids) & valid & ~copied & caption_rows[:, None]


def evaluate(model, data: RunData, batch_size: int, image_token_id: int, pad_token_id: int, device) -> dict:
    """Mean NLL per caption token (``val_loss``), its ``exp`` (``val_perplexity``), exact-match accuracy of the
    answers to questions (teacher forcing: every answer token the arg-max, so greedy decoding gives it), and
    ``attribute_accuracy``: the arg-max is right on the caption's attribute words (``data.attribute_ids``) except
    copies: a word the caption already said, repeated within two tokens after a reference word such as "the"
    ("a red cube ... left of the red cube"). A word said for the first time always counts ("at the top left").
    ``attribute_accuracy_by_group``: the same over each group's words (``data.group_ids``)."""
    import torch

    model.eval()
    nll_sum, token_count = 0.0, 0
    attributes = _Counts()
    groups = {group: _Counts() for group in data.group_ids or {}}
    correct: dict[str, list[bool]] = {}
    with torch.no_grad():
        for start in range(0, len(data.tokens.input_ids), batch_size):
            indices = list(range(start, min(start + batch_size, len(data.tokens.input_ids))))
            batch = data.batch(indices, image_token_id, pad_token_id)
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
                named = _scored_attributes(targets, valid, data, indices)  # (B, L-1)
                attributes.add(hit, named)
                for group, counts in groups.items():
                    counts.add(hit, named & torch.isin(targets, data.group_ids[group]))
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
    return {
        "val_loss": val_loss,
        "val_perplexity": math.exp(val_loss) if token_count else float("nan"),
        "accuracy": accuracy,
        "accuracy_by_task": by_task,
        "attribute_accuracy": attributes.value,
        "attribute_accuracy_by_group": {group: counts.value for group, counts in groups.items()},
    }


def _model_for(config: ComparisonConfig, tokenizer, train: RunData, val: RunData, seed: int):
    """The run's model on its device, initialised from ``seed`` (sized for the largest token count)."""
    import torch

    max_tokens = max(int(train.num_tokens.max()), int(val.num_tokens.max()), 1)
    torch.manual_seed(seed)
    return build_model(config, tokenizer, max_tokens).to(torch.device(config.device))


def train_run(
    config: ComparisonConfig,
    tokenizer,
    train: RunData,
    val: RunData,
    seed: int,
    desc: str,
    weights_path: str | Path | None = None,
) -> dict:
    """Train one model from scratch on ``train`` and evaluate it on ``val`` every ``eval_every`` steps: the last
    evaluation's metrics, the lowest val loss (``best_val_loss``, rounded as in ``curve``) and its ``best_step``.
    With ``weights_path``, the final weights are saved there (for :func:`evaluate_saved`).

    The initial weights and the batch order depend on ``seed`` only, so runs that differ in the tokenizer see
    the same samples in the same order from the same starting point. The step bar shows on a terminal only.
    """
    import torch
    from tqdm import tqdm
    from transformers import get_cosine_schedule_with_warmup

    section = config.training
    device = torch.device(config.device)
    model = _model_for(config, tokenizer, train, val, seed)
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
    progress = tqdm(
        range(1, section.steps + 1), desc=desc, unit="step", file=sys.stderr, leave=False, disable=None
    )
    for step in progress:
        while len(queue) < section.batch_size:  # epochs of a seeded permutation
            queue += torch.randperm(num_samples, generator=order).tolist()
        indices, queue = queue[: section.batch_size], queue[section.batch_size :]
        start = time.perf_counter()
        batch = train.batch(indices, image_token_id, pad_token_id)
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
    if weights_path is not None:
        save_weights(model, weights_path)
    steady = step_times[min(5, len(step_times) - 1) :]  # the first steps warm up allocators and caches
    losses = np.array([point[2] for point in curve], dtype=float)
    best = int(np.nanargmin(losses)) if np.isfinite(losses).any() else len(curve) - 1
    return {
        **metrics,
        "best_val_loss": curve[best][2],
        "best_step": curve[best][0],
        "train_seconds": round(train_seconds, 2),
        "step_seconds": float(np.median(steady)),
        "curve": curve,
    }


def save_weights(model, path: str | Path) -> None:
    """The model's state dict at ``path`` (``torch.save``, written atomically)."""
    import torch

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path) as file:
        torch.save(model.state_dict(), file)


def evaluate_saved(
    config: ComparisonConfig, tokenizer, train: RunData, val: RunData, seed: int, weights_path: str | Path
) -> dict:
    """:func:`evaluate` on ``val`` of the weights :func:`train_run` saved at ``weights_path``: a run's metrics
    again, for other evaluation settings (attribute words, groups), without training."""
    import torch

    model = _model_for(config, tokenizer, train, val, seed)
    model.load_state_dict(torch.load(weights_path, map_location=config.device, weights_only=True))
    device = torch.device(config.device)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.training.bf16):
        ids = model.config.image_token_id, tokenizer.pad_token_id
        return evaluate(model, val, config.training.eval_batch_size, *ids, device)
