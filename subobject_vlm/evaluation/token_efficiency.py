"""The token-efficiency experiment: does a VLM learn more from subobject tokens than from patch tokens?

``subobject-vlm compare-tokenizers --config configs/compare_quick.yaml`` trains the same small LLaVA-style
model once per (tokenizer, budget, seed) on the same data, with the same initialisation, batches, steps and
learning-rate schedule, and evaluates each on held-out data. Only the label maps differ: every tokenizer runs
through :class:`SubobjectImageProcessor`, and patch grids are label maps like any other, so patch and region
tokens go through the same :class:`MaskPooledEmbedding`.

Outputs in ``output_dir``: ``results.jsonl`` (one line per finished run, appended as runs finish; a rerun skips
the runs already there), ``results.md`` (a table, mean and spread over seeds), ``perplexity_vs_tokens.png``,
``val_loss_vs_steps.png``, ``val_loss_vs_time.png``; ``data/`` (the generated scenes, when synthetic) and
``segmentations/`` (label maps per tokenizer, budget and split, computed once).

Config layout (unknown keys are errors)::

    output_dir: runs/compare_quick
    data:
      synthetic: {train: 1000, val: 100, size: 128, seed: 0}     # CLEVR-like scenes (data/clevr_like.py)
      # or: train: {path: llava.json, image_folder: images}, val: {path: ...}   (LLaVA JSON/JSONL, HF dataset)
    image_size: 128                    # pixels for the vision tower
    label_size: 128                    # label maps (every tokenizer)
    tokenizers:                        # name -> SubobjectImageProcessor settings, plus `match`
      patch: {boundary_model: patch}
      ours: {boundary_model: default, boundary_model_options: {resolution: 256}}
      slic: {boundary_model: slic, match: ours}    # exactly `ours`' per-image counts at each budget
    budgets: [16, 64]                  # max_tokens (baselines: exact counts; patch 16 = 4x4 grid)
    seeds: [0, 1]
    model:
      vision: pixels                   # pixels | cnn | {timm: NAME, pretrained: true} | {hf: NAME_OR_PATH}
      text: {hidden_size: 128, num_hidden_layers: 2}   # a Llama from scratch + word-level tokenizer,
                                       # or {pretrained: HuggingFaceTB/SmolLM2-135M}
    training: {steps: 400, batch_size: 16, learning_rate: 1e-3, warmup_steps: 20, eval_every: 50}
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..training.config import (
    ConfigError,
    build_dataclass,
    load_yaml_config,
    run_config_command,
)

RESULT_FIELDS = (
    "tokenizer", "budget", "seed", "mean_tokens", "steps", "batch_size", "val_loss", "val_perplexity",
    "accuracy", "accuracy_by_task", "attribute_accuracy", "train_seconds", "wall_seconds", "step_seconds", "curve",
)  # fmt: skip
VISION_NAMES = ("pixels", "cnn")
EXAMPLES_SHOWN = 4  # val images drawn in tokens_examples.png


# ------------------------------------------------------------------------------------------------ config


@dataclass
class TrainingSection:
    steps: int = 400
    batch_size: int = 16
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 20
    max_grad_norm: float = 1.0
    eval_every: int = 50
    eval_batch_size: int = 32
    bf16: bool = False  # autocast to bfloat16 (GPU runs)

    def validate(self) -> None:
        for name in ("steps", "batch_size", "eval_every", "eval_batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"training.{name} must be a positive integer, got {value!r}")
        for name in ("learning_rate", "weight_decay", "max_grad_norm"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"training.{name} must be a non-negative number, got {value!r}")
        if not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise ConfigError(
                f"training.warmup_steps must be a non-negative integer, got {self.warmup_steps!r}"
            )


@dataclass
class ComparisonConfig:
    output_dir: str
    data: dict[str, Any]
    tokenizers: dict[str, dict[str, Any]]
    budgets: list[int] = field(default_factory=lambda: [16, 64])
    seeds: list[int] = field(default_factory=lambda: [0])
    image_size: int = 128
    label_size: int = 128
    model: dict[str, Any] = field(default_factory=lambda: {"vision": "pixels", "text": {}})
    training: TrainingSection = field(default_factory=TrainingSection)
    max_length: int | None = None
    torch_threads: int | None = None
    device: str = "cpu"

    def validate(self) -> None:
        from ..image_processing_subobject import SubobjectImageProcessor

        self.training.validate()
        if not self.tokenizers or not isinstance(self.tokenizers, dict):
            raise ConfigError("tokenizers: name at least one tokenizer (name -> processor settings)")
        known = set(SubobjectImageProcessor.valid_kwargs.__annotations__) - {"max_tokens", "label_size"}
        for name, spec in self.tokenizers.items():
            if not isinstance(spec, dict) or "boundary_model" not in spec:
                raise ConfigError(f"tokenizers.{name}: needs at least 'boundary_model' (e.g. default, patch)")
            unknown = sorted(set(spec) - known - {"match", "budgets"})
            if unknown:
                raise ConfigError(
                    f"tokenizers.{name}: unknown settings {unknown} (known: {sorted(known)}, match)"
                )
            own = spec.get("budgets")
            if own is not None and (
                not isinstance(own, list) or not own or not all(isinstance(b, int) and b >= 1 for b in own)
            ):
                raise ConfigError(
                    f"tokenizers.{name}.budgets must be a non-empty list of positive integers, got {own!r}"
                )
            match = spec.get("match")
            if match is not None and own is not None:
                raise ConfigError(
                    f"tokenizers.{name}: a matched baseline takes the budgets of {match!r}, not its own"
                )
            if match is not None and (match not in self.tokenizers or self.tokenizers[match].get("match")):
                raise ConfigError(
                    f"tokenizers.{name}.match: {match!r} must name another tokenizer without 'match'"
                )
            if match is not None and spec["boundary_model"] not in ("patch", "slic", "felzenszwalb"):
                raise ConfigError(
                    f"tokenizers.{name}.match: only baselines (patch, slic, felzenszwalb) take exact counts"
                )
        for key in ("budgets", "seeds"):
            values = getattr(self, key)
            if not isinstance(values, list) or not values or not all(isinstance(v, int) for v in values):
                raise ConfigError(f"{key} must be a non-empty list of integers, got {values!r}")
        if min(self.budgets) < 1:
            raise ConfigError(f"budgets must be positive, got {self.budgets}")
        for key in ("image_size", "label_size"):
            if not isinstance(getattr(self, key), int) or getattr(self, key) < 8:
                raise ConfigError(f"{key} must be an integer >= 8, got {getattr(self, key)!r}")
        _check_data_section(self.data)
        _check_model_section(self.model)
        if self.torch_threads is not None and self.torch_threads < 1:
            raise ConfigError(f"torch_threads must be >= 1, got {self.torch_threads}")
        if self.device != "cpu":
            import torch

            if self.device.startswith("cuda") and not torch.cuda.is_available():
                raise ConfigError(f"device {self.device!r} is not available here (no CUDA); use device: cpu")


def _check_data_section(data: dict) -> None:
    if not isinstance(data, dict) or ("synthetic" in data) == ("train" in data):
        raise ConfigError("data: set either 'synthetic' or 'train' (+ 'val')")
    for key in ("attribute_words", "reference_words"):
        words = data.get(key, [])
        if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
            raise ConfigError(f"data.{key} must be a list of words, got {words!r}")
    data = {k: v for k, v in data.items() if k not in ("attribute_words", "reference_words")}
    if "synthetic" in data:
        unknown = sorted(set(data) - {"synthetic"}) + sorted(
            set(data["synthetic"]) - {"train", "val", "size", "seed", "min_objects", "max_objects"}
        )
        if unknown:
            raise ConfigError(f"data.synthetic: unknown keys {unknown}")
        return
    if sorted(set(data) - {"train", "val"}) or "val" not in data:
        raise ConfigError("data: a user dataset needs exactly 'train' and 'val' sources")
    for split in ("train", "val"):
        source = data[split]
        if not isinstance(source, dict) or "path" not in source:
            raise ConfigError(
                f"data.{split}: needs a 'path' (LLaVA .json/.jsonl, save_to_disk folder or dataset)"
            )
        unknown = sorted(set(source) - {"path", "image_folder", "split", "limit"})
        if unknown:
            raise ConfigError(f"data.{split}: unknown keys {unknown}")


def _check_model_section(model: dict) -> None:
    if not isinstance(model, dict) or sorted(
        set(model) - {"vision", "text", "projector_depth", "shape_resolution"}
    ):
        raise ConfigError("model: keys are vision, text, projector_depth, shape_resolution")
    vision = model.get("vision", "pixels")
    if isinstance(vision, str):
        if vision not in VISION_NAMES:
            raise ConfigError(
                f"model.vision must be one of {VISION_NAMES} or {{timm: ...}} / {{hf: ...}}, got {vision!r}"
            )
    elif not (isinstance(vision, dict) and len({"timm", "hf"} & set(vision)) == 1):
        raise ConfigError(f"model.vision: a mapping needs exactly one of 'timm' or 'hf', got {vision!r}")
    text = model.get("text", {})
    if not isinstance(text, dict):
        raise ConfigError(f"model.text must be a mapping, got {text!r}")


def _convert(cls, name: str, value: Any, path: str) -> Any:
    if cls is ComparisonConfig and name == "training":
        return build_dataclass(TrainingSection, value or {}, path)
    return value


def load_config(config: str | os.PathLike | dict) -> ComparisonConfig:
    """A YAML file or a dict -> validated :class:`ComparisonConfig` (``ConfigError`` naming the key)."""
    return load_yaml_config(config, ComparisonConfig, _convert)


# -------------------------------------------------------------------------------------------------- data


@dataclass
class Split:
    """One split held in memory: ``images`` (N, S, S, 3) uint8 at ``image_size`` (each distinct image once),
    and per sample its image index, conversation turns and task (``caption`` unless the data say otherwise)."""

    images: np.ndarray
    image_of_sample: np.ndarray
    conversations: list[list[dict]]
    tasks: list[str]


def _synthetic_split(config: ComparisonConfig, split: str, data_dir: Path) -> Path:
    from ..data.clevr_like import make_clevr_like

    options = {"size": config.image_size, "seed": 0, **config.data["synthetic"]}
    counts = {"train": options.pop("train", 1000), "val": options.pop("val", 100)}
    count = counts[split]
    folder = data_dir / f"{split}-{count}-{_digest(options)}"
    if not (folder / "data.json").is_file():
        make_clevr_like(folder, split=split, num_images=count, **options)
    return folder / "data.json"


def load_split(config: ComparisonConfig, split: str, data_dir: Path) -> Split:
    """The records of ``split`` with their images decoded once and resized to ``image_size`` x ``image_size``
    (photos of other aspect ratios are squashed, as a fixed-size vision encoder would see them)."""
    import cv2

    from ..image_utils import load_image
    from ..training.vlm_data import DataError, _normalise_turns, _read_records

    if "synthetic" in config.data:
        path, image_folder, limit = _synthetic_split(config, split, data_dir), None, None
    else:
        source = config.data[split]
        path, image_folder, limit = Path(source["path"]), source.get("image_folder"), source.get("limit")
    if Path(path).suffix in (".json", ".jsonl"):
        records = _read_records(Path(path))[:limit]
        folder = Path(image_folder) if image_folder else Path(path).parent
        keys = [str((folder / r["image"]).resolve()) if r.get("image") else None for r in records]
        load = load_image
    else:  # an HF dataset: images are PIL objects in the rows
        from ..training.vlm_data import load_conversations

        dataset = load_conversations(path, split=config.data[split].get("split", split), limit=limit)
        records = [{"conversations": row["conversations"], "image": row["image"]} for row in dataset]
        keys = [None if r["image"] is None else f"row{i}" for i, r in enumerate(records)]
        load = None
    images, index_of_key, image_of_sample, conversations, tasks = [], {}, [], [], []
    for i, (record, key) in enumerate(zip(records, keys)):
        if key is None:
            raise DataError(f"{path}: record {i} has no image; the comparison needs an image per sample")
        if key not in index_of_key:
            try:
                rgb = load(key) if load is not None else _rgb(record["image"])
            except Exception as error:  # noqa: BLE001 - name the record whatever went wrong
                raise DataError(f"{path}: record {i}: cannot read image {key}: {error}") from None
            index_of_key[key] = len(images)
            size = (config.image_size, config.image_size)
            images.append(
                cv2.resize(rgb, size, interpolation=cv2.INTER_AREA) if rgb.shape[:2] != size else rgb
            )
        image_of_sample.append(index_of_key[key])
        conversations.append(_normalise_turns(record["conversations"], f"{path}: record {i}"))
        tasks.append(str(record.get("task", "caption")))
    if not images:
        raise DataError(f"{path}: no samples")
    return Split(np.stack(images), np.asarray(image_of_sample), conversations, tasks)


def _rgb(image) -> np.ndarray:
    from ..image_utils import to_rgb_uint8

    return to_rgb_uint8(image)


def _digest(*parts: Any) -> str:
    return hashlib.blake2b(json.dumps(parts, sort_keys=True, default=str).encode(), digest_size=6).hexdigest()


# ---------------------------------------------------------------------------------------------- tokens


def segment_split(
    config: ComparisonConfig, name: str, budget: int, split: str, images: np.ndarray, out_dir: Path,
    counts: np.ndarray | None = None, processor=None,
) -> np.ndarray:  # fmt: skip
    """Label maps (N, h, w) int16 of tokenizer ``name`` at ``budget`` for ``images``, cached in ``out_dir``.

    ``counts`` (N,): exact per-image counts for a baseline matched to another tokenizer. Each image goes through
    :meth:`SubobjectImageProcessor.segment` (the processor a user would run); the file is written atomically.
    """
    from tqdm import tqdm

    from ..image_processing_subobject import SubobjectImageProcessor

    settings = {k: v for k, v in config.tokenizers[name].items() if k not in ("match", "budgets")}
    content = hashlib.blake2b(images.tobytes(), digest_size=16).hexdigest()  # the cache follows the pixels
    key = _digest(settings, budget, config.label_size, content, None if counts is None else counts.tolist())
    path = out_dir / f"{name}-{budget}-{split}-{key}.npy"
    if path.is_file():
        return np.load(path)
    if processor is None:
        processor = SubobjectImageProcessor(cache_size=len(images) + 1)
    overrides = {
        **settings,
        "max_tokens": budget,
        "label_size": {"height": config.label_size, "width": config.label_size},
    }
    maps = np.empty((len(images), config.label_size, config.label_size), np.int16)
    chunk = 16
    for start in tqdm(range(0, len(images), chunk), desc=f"segment {split} {name}@{budget}", unit="batch",
                      file=sys.stderr, leave=False):  # fmt: skip
        batch = list(images[start : start + chunk])
        if counts is None:
            label_maps = processor.segment(batch, **overrides)
        else:  # a baseline at exactly the matched tokenizer's count for each image
            label_maps = [
                processor.segment([image], **{**overrides, "max_tokens": int(n)})[0]
                for image, n in zip(batch, counts[start : start + chunk])
            ]
        maps[start : start + len(batch)] = np.stack(label_maps)
    out_dir.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".partial.npy")
    np.save(temporary, maps)
    os.replace(temporary, path)
    return maps


def build_text_tokenizer(config: ComparisonConfig, train: Split):
    """A pretrained LM's tokenizer, or a word-level one built from the training conversations."""
    text = config.model.get("text", {})
    if "pretrained" in text:
        from transformers import AutoTokenizer

        from ..processing_subobject_llava import add_image_token

        tokenizer = AutoTokenizer.from_pretrained(text["pretrained"])
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        add_image_token(tokenizer)
        return tokenizer
    from tokenizers import pre_tokenizers

    from ..training.vlm_data import tiny_tokenizer

    splitter = pre_tokenizers.Whitespace()
    words = {"USER", "ASSISTANT", ":"}
    for turns in train.conversations:
        for turn in turns:
            words.update(w for w, _ in splitter.pre_tokenize_str(turn["value"].replace("<image>", " ")))
    return tiny_tokenizer(sorted(words))


def attribute_token_ids(config: ComparisonConfig, tokenizer) -> tuple[Any, Any]:
    """``(attribute_ids, reference_ids)`` for ``attribute_accuracy``: the words that name what is in the image
    (``data.attribute_words``; for the synthetic scenes: counts, sizes, materials, colours, shapes) and the
    words after which they are copies (``data.reference_words``, default ``["the"]``). Only words that are a
    single token count; ``(None, None)`` when there are none."""
    import torch

    from ..data.clevr_like import ATTRIBUTE_WORDS

    words = config.data.get("attribute_words", list(ATTRIBUTE_WORDS) if "synthetic" in config.data else [])
    references = config.data.get("reference_words", ["the"])

    def single_token_ids(candidates: list[str]) -> Any:
        ids = [tokenizer(w, add_special_tokens=False)["input_ids"] for w in candidates]
        return torch.tensor(sorted({i[0] for i in ids if len(i) == 1 and i[0] != tokenizer.unk_token_id}))

    attribute_ids = single_token_ids(words)
    if attribute_ids.numel() == 0:
        return None, None
    return attribute_ids, single_token_ids(references)


@dataclass
class TokenizedSplit:
    """Token ids with one image placeholder per sample (expanded per run to ``num_tokens + 2``)."""

    input_ids: list[np.ndarray]
    labels: list[np.ndarray]
    image_position: np.ndarray  # (N,) index of the single placeholder


def tokenize_split(processor, split: Split, max_length: int | None) -> TokenizedSplit:
    """Chat-template every conversation once; labels cover assistant turns only."""
    from ..training.vlm_data import DataError, conversation_messages, tokenize_conversation

    ids_list, labels_list, positions = [], [], []
    for i, turns in enumerate(split.conversations):
        messages = conversation_messages(turns, True, processor.image_token, f"sample {i}")
        result = tokenize_conversation(
            processor, messages, -1, None, f"sample {i}"
        )  # -1 + 2: one placeholder
        if result is None:
            raise DataError(f"sample {i}: no assistant tokens to learn from")
        ids, labels = (np.asarray(x, np.int64) for x in result)
        where = np.flatnonzero(ids == processor.image_token_id)
        if len(where) != 1:
            raise DataError(f"sample {i}: expected one image, found {len(where)} image tokens")
        if max_length is not None:
            ids, labels = ids[:max_length], labels[:max_length]
        ids_list.append(ids)
        labels_list.append(labels)
        positions.append(int(where[0]))
    return TokenizedSplit(ids_list, labels_list, np.asarray(positions))


def collate(tokens: TokenizedSplit, split: Split, label_maps, num_tokens, pixel_values, indices, image_token_id,
            pad_token_id) -> dict:  # fmt: skip
    """A batch for :class:`SubobjectLlavaForConditionalGeneration`: placeholders expanded to ``n + 2``,
    right padding; ``label_maps`` (B, h, w) int64, ``num_tokens`` (B,), ``pixel_values`` (B, 3, S, S)."""
    import torch

    from ..configuration_subobject_llava import num_image_placeholders
    from ..training.vlm_data import IGNORE_INDEX

    rows_ids, rows_labels = [], []
    for i in indices:
        p, n = tokens.image_position[i], int(num_tokens[split.image_of_sample[i]])
        placeholders = np.full(int(num_image_placeholders(n)), image_token_id)
        rows_ids.append(np.concatenate([tokens.input_ids[i][:p], placeholders, tokens.input_ids[i][p + 1 :]]))
        rows_labels.append(
            np.concatenate(
                [tokens.labels[i][:p], np.full(len(placeholders), IGNORE_INDEX), tokens.labels[i][p + 1 :]]
            )
        )
    length = max(len(r) for r in rows_ids)
    input_ids = torch.full((len(indices), length), pad_token_id, dtype=torch.long)
    labels = torch.full((len(indices), length), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((len(indices), length), dtype=torch.long)
    for row, (ids, lab) in enumerate(zip(rows_ids, rows_labels)):
        input_ids[row, : len(ids)] = torch.from_numpy(ids)
        labels[row, : len(lab)] = torch.from_numpy(lab)
        attention_mask[row, : len(ids)] = 1
    images = split.image_of_sample[np.asarray(indices)]
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "labels": labels,
        "pixel_values": pixel_values[torch.from_numpy(images)],
        "label_maps": torch.from_numpy(label_maps[images].astype(np.int64)),
        "num_tokens": torch.from_numpy(num_tokens[images].astype(np.int64)),
    }


# ------------------------------------------------------------------------------------------------- model


def build_model(config: ComparisonConfig, tokenizer, max_tokens: int):
    """The SubobjectLlava every run trains: vision tower, MaskPooledEmbedding, language model (see the config)."""
    from transformers import AutoConfig, LlamaConfig, ResNetConfig

    from ..configuration_subobject_llava import SubobjectLlavaConfig
    from ..modeling_pixel_features import PixelFeaturesConfig
    from ..modeling_subobject_llava import SubobjectLlavaForConditionalGeneration

    section = config.model
    vision = section.get("vision", "pixels")
    vision_kwargs: dict[str, Any] = {}
    if vision == "pixels":
        vision_kwargs = {"vision_config": PixelFeaturesConfig(), "feature_layer": -1}
    elif vision == "cnn":  # a small ResNet trained from scratch with the rest: stride 4, 64 channels
        resnet = ResNetConfig(embedding_size=32, hidden_sizes=[64], depths=[2], layer_type="basic")
        vision_kwargs = {"vision_config": resnet, "feature_layer": -1}
    elif "timm" in vision:
        vision_kwargs = {"vision_config": None, "timm_model_name": vision["timm"],
                         "timm_pretrained": bool(vision.get("pretrained", False)),
                         "feature_layer": vision.get("feature_layer", -1)}  # fmt: skip
    else:
        hf = AutoConfig.from_pretrained(vision["hf"])
        vision_kwargs = {"vision_config": getattr(hf, "vision_config", None) or hf,
                         "feature_layer": vision.get("feature_layer", -2)}  # fmt: skip
    text = dict(section.get("text", {}))
    pretrained_text = text.pop("pretrained", None)
    if pretrained_text is not None:
        text_config = AutoConfig.from_pretrained(pretrained_text)
    else:
        width = text.pop("hidden_size", 128)
        text_config = LlamaConfig(**{
            "hidden_size": width, "intermediate_size": 2 * width, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 4, "max_position_embeddings": 2048,
            "vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id,
            "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id, **text,
        })  # fmt: skip
    model_config = SubobjectLlavaConfig(
        text_config=text_config,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        max_tokens_per_image=max_tokens,
        projector_depth=section.get("projector_depth", 2),
        shape_resolution=section.get("shape_resolution", 8),
        **vision_kwargs,
    )
    model = SubobjectLlavaForConditionalGeneration(model_config)
    if pretrained_text is not None:
        from transformers import AutoModelForCausalLM

        lm = AutoModelForCausalLM.from_pretrained(pretrained_text, use_safetensors=True)
        model.model.language_model.load_state_dict(lm.model.state_dict())
        model.lm_head.load_state_dict(lm.lm_head.state_dict())
    if "hf" in (vision if isinstance(vision, dict) else {}):
        tower = type(model.model.vision_tower).from_pretrained(vision["hf"], use_safetensors=True)
        model.model.vision_tower.load_state_dict(tower.state_dict())
    return model


# ------------------------------------------------------------------------------------------- train, eval


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
    ``attribute_accuracy``: the arg-max is right on the caption's attribute words (``data.attribute_ids``) where
    they are first named, i.e. not within two tokens after a reference word such as "the" (a copy, not a look)."""
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
                copied = torch.isin(before[:, 1:-1], data.reference_ids) | torch.isin(
                    before[:, :-2], data.reference_ids
                )
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
    """Train one model from scratch on ``train`` and evaluate it on ``val`` every ``eval_every`` steps.

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
    return {**metrics, "train_seconds": round(train_seconds, 2), "step_seconds": float(np.median(steady)),
            "curve": curve}  # fmt: skip


# ------------------------------------------------------------------------------------------------ driver


def budgets_of(config: ComparisonConfig, name: str) -> list[int]:
    """A tokenizer's budgets: its own ``budgets`` (e.g. ``[1]`` for an almost image-blind reference), those of
    the tokenizer it matches, or the config's."""
    spec = config.tokenizers[name]
    source = config.tokenizers[spec["match"]] if spec.get("match") else spec
    return list(source.get("budgets") or config.budgets)


def _run_order(config: ComparisonConfig) -> list[str]:
    """Tokenizers others match come first."""
    return sorted(config.tokenizers, key=lambda name: config.tokenizers[name].get("match") is not None)


def _read_results(path: Path) -> list[dict]:
    """Finished runs; a torn last line (a run killed while writing) is ignored."""
    if not path.is_file():
        return []
    runs = []
    for line in path.read_text().splitlines():
        try:
            runs.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return runs


def _append_result(path: Path, record: dict) -> None:
    """Append one line and fsync, so a finished run survives a crash of a later one."""
    text = path.read_text() if path.is_file() else ""
    if text and not text.endswith("\n"):  # drop a torn line left by an interrupted write
        text = text[: text.rfind("\n") + 1]
    temporary = path.with_suffix(".jsonl.partial")
    with open(temporary, "w") as handle:
        handle.write(text + json.dumps(record) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def compare_tokenizers(config: str | os.PathLike | dict) -> Path:
    """Run every (tokenizer, budget, seed) of ``config`` not already in ``results.jsonl``; write the table and
    the plots; return the output folder. Raises ``ConfigError`` / ``DataError`` before any training."""
    import cv2
    import torch

    from ..image_processing_subobject import SubobjectImageProcessor
    from ..processing_subobject_llava import DEFAULT_CHAT_TEMPLATE, SubobjectLlavaProcessor
    from .plots import plot_token_efficiency, plot_tokenizer_examples

    config = load_config(config)
    if config.torch_threads:
        torch.set_num_threads(config.torch_threads)
    out_dir = Path(config.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fingerprint = _digest({k: v for k, v in asdict(config).items() if k not in ("output_dir", "seeds", "budgets",
                                                                                    "tokenizers", "torch_threads")})  # fmt: skip
    results_path = out_dir / "results.jsonl"
    done = {(r["tokenizer"], r["budget"], r["seed"], r.get("tokenizer_key")) for r in _read_results(results_path)
            if r.get("fingerprint") == fingerprint}  # fmt: skip

    splits = {s: load_split(config, s, out_dir / "data") for s in ("train", "val")}
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
        key = _digest(spec["boundary_model"], spec.get("boundary_model_options"))
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
                    matched = segment_split(config, spec["match"], budget, s, splits[s].images,
                                            out_dir / "segmentations", processor=processor_for(spec["match"]))  # fmt: skip
                    counts = matched.reshape(len(matched), -1).max(1).astype(np.int64) + 1
                label_maps = segment_split(config, name, budget, s, splits[s].images, out_dir / "segmentations",
                                           counts=counts, processor=processor_for(name))  # fmt: skip
                num_tokens = label_maps.reshape(len(label_maps), -1).max(1).astype(np.int64) + 1
                data[s] = RunData(splits[s], tokens[s], label_maps, num_tokens, pixels[s], *word_ids)
            examples[f"{name} @ {budget}"] = data["val"].label_maps[:shown]
            tokenizer_key = _digest(spec)  # a run is redone when its tokenizer's settings change
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
                _append_result(results_path, record)
                print(f"{name}@{budget} seed {seed}: {record['mean_tokens']:.1f} tokens/image, val loss "
                      f"{record['val_loss']:.4f}, perplexity {record['val_perplexity']:.3f}, accuracy "
                      f"{record['accuracy']:.3f}, {record['step_seconds'] * 1000:.1f} ms/step", file=sys.stderr)  # fmt: skip
    wanted = {(name, budget, seed, _digest(config.tokenizers[name])) for name in config.tokenizers
              for budget in budgets_of(config, name) for seed in config.seeds}  # fmt: skip
    runs = [r for r in _read_results(results_path) if r.get("fingerprint") == fingerprint
            and (r["tokenizer"], r["budget"], r["seed"], r.get("tokenizer_key")) in wanted]  # fmt: skip
    (out_dir / "results.md").write_text(results_table(runs))
    plot_token_efficiency(runs, out_dir)
    small = [
        cv2.resize(image, (config.label_size,) * 2, interpolation=cv2.INTER_AREA)
        for image in splits["val"].images[:shown]
    ]
    plot_tokenizer_examples(np.stack(small), examples, out_dir / "tokens_examples.png")
    return out_dir


def summarize(runs: list[dict]) -> list[dict]:
    """Mean and standard deviation over seeds per (tokenizer, budget), in first-seen order."""
    groups: dict[tuple, list[dict]] = {}
    for run in runs:
        groups.setdefault((run["tokenizer"], run["budget"]), []).append(run)
    rows = []
    for (name, budget), members in groups.items():
        row = {"tokenizer": name, "budget": budget, "seeds": len(members)}
        for key in ("mean_tokens", "val_loss", "val_perplexity", "accuracy", "attribute_accuracy", "step_seconds",
                    "train_seconds", "wall_seconds"):  # fmt: skip
            values = np.array([m.get(key, np.nan) for m in members], dtype=float)
            row[key], row[f"{key}_std"] = float(values.mean()), float(values.std())
        rows.append(row)
    return rows


def results_table(runs: list[dict]) -> str:
    """Markdown: one row per (tokenizer, budget), mean ± std over seeds."""
    lines = [
        "| tokenizer | budget | tokens / image | val loss | val perplexity | attribute accuracy | QA accuracy "
        "| ms / step | s / run | seeds |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(summarize(runs), key=lambda r: (r["budget"], r["val_perplexity"])):
        lines.append(
            f"| {r['tokenizer']} | {r['budget']} | {r['mean_tokens']:.1f} "
            f"| {r['val_loss']:.4f} ± {r['val_loss_std']:.4f} | {r['val_perplexity']:.3f} ± {r['val_perplexity_std']:.3f} "
            f"| {r['attribute_accuracy']:.3f} ± {r['attribute_accuracy_std']:.3f} "
            f"| {r['accuracy']:.3f} ± {r['accuracy_std']:.3f} | {1000 * r['step_seconds']:.1f} "
            f"| {r['wall_seconds']:.0f} | {r['seeds']} |"
        )
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------- CLI


def add_compare_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of ``subobject-vlm compare-tokenizers``."""
    parser.add_argument("--config", required=True, help="YAML comparison config (configs/compare_*.yaml)")
    parser.add_argument("--output-dir", default=None, help="override the config's output_dir")
    parser.add_argument("--steps", type=int, default=None, help="override training.steps")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="override the config's seeds")
    return parser


def cmd_compare(args: argparse.Namespace) -> int:
    """Run ``subobject-vlm compare-tokenizers``; prints the output folder. Exit status 2 on a bad config or data."""
    overrides = {"output_dir": args.output_dir, "training.steps": args.steps, "seeds": args.seeds}
    return run_config_command(compare_tokenizers, args.config, overrides)


__all__ = [
    "ComparisonConfig",
    "add_compare_arguments",
    "build_model",
    "cmd_compare",
    "compare_tokenizers",
    "load_config",
    "results_table",
    "summarize",
]
