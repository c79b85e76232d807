"""Data for SubobjectLlava instruction tuning: LLaVA-style conversations, precomputed segmentations, collation.

Pipeline (each step a cached ``datasets.map``; segmentation runs once per image, never per training step)::

    load_conversations(source)                 # columns: image (path | PIL | None), conversations
      -> precompute_segmentations(...)         # + label_maps (h, w) int16/int32 at label_size, num_tokens
         or use_precomputed_segmentations(...) # + label_map_png, num_tokens from `subobject-vlm precompute`
      -> tokenize_conversations(...)           # + input_ids, labels (-100 except assistant turns)
      -> SubobjectCollator(...)                # pads text, loads + normalises pixels, packs per-image tensors

A LLaVA JSON/JSONL record is ``{"image": "rel/path.jpg", "conversations": [{"from": "human", "value":
"<image>\\nWhat is this?"}, {"from": "gpt", "value": "A cat."}, ...]}``; ``image`` is optional (text-only).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch

from ..caching import digest
from ..configuration_subobject_llava import num_image_placeholders
from ..data.llava import ROLES, DataError, image_key, load_rgb, normalise_turns, read_records, record_images
from ..data.synthetic_shapes import make_synthetic_shapes, synthetic_vocabulary

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100


# ---------------------------------------------------------------------------------------------- sources


def load_conversations(
    path: str | os.PathLike,
    image_folder: str | os.PathLike | None = None,
    split: str = "train",
    image_column: str = "image",
    conversations_column: str = "conversations",
    limit: int | None = None,
    with_keys: bool = False,
):
    """A ``datasets.Dataset`` with columns ``image`` (absolute path, PIL image or ``None``) and ``conversations``.

    ``path``: a LLaVA ``.json``/``.jsonl`` file (image paths relative to ``image_folder``, default the file's
    folder), a ``save_to_disk`` folder, or a dataset name for ``load_dataset``. Raises ``DataError`` naming
    missing image files. ``with_keys`` adds ``image_key`` (``None`` without image): :func:`image_key` of the
    record's image for a LLaVA file, the row index for a dataset, as ``subobject-vlm precompute`` names them.
    """
    import datasets

    path_obj = Path(path)
    if path_obj.suffix in (".json", ".jsonl"):
        if not path_obj.is_file():
            raise DataError(f"conversation file {path_obj} does not exist")
        records = read_records(path_obj)[:limit]
        folder = Path(image_folder) if image_folder is not None else path_obj.parent
        images, keys, conversations = [], [], []
        for i, record in enumerate(records):
            if not isinstance(record, dict) or conversations_column not in record:
                raise DataError(f"{path_obj}: record {i} has no {conversations_column!r} list")
            names = record_images(record, image_column, f"{path_obj}: record {i}")
            if len(names) > 1:  # the model takes several per sample; this pipeline's columns hold one
                raise DataError(
                    f"{path_obj}: record {i} has {len(names)} images; training takes one image per sample "
                    "(split the record, or keep one image)"
                )
            images.append(str((folder / names[0]).resolve()) if names else None)
            keys.append(image_key(names[0]) if names else None)
            conversations.append(normalise_turns(record[conversations_column], f"{path_obj}: record {i}"))
        missing = [p for p in images if p is not None and not Path(p).is_file()]
        if missing:
            raise DataError(
                f"{len(missing)} image(s) listed in {path_obj} are missing from {folder}: {', '.join(missing[:5])}"
            )
        columns = {"image": images, "conversations": conversations}
        if with_keys:
            columns["image_key"] = keys
        return datasets.Dataset.from_dict(columns)
    if path_obj.is_dir() and (path_obj / "dataset_dict.json").exists():
        dataset = datasets.load_from_disk(str(path_obj))[split]
    elif path_obj.is_dir() and (path_obj / "dataset_info.json").exists():
        dataset = datasets.load_from_disk(str(path_obj))
    else:
        dataset = datasets.load_dataset(str(path), split=split)
    if limit is not None:
        dataset = dataset.select(range(min(limit, len(dataset))))
    for column in (image_column, conversations_column):
        if column not in dataset.column_names:
            raise DataError(f"dataset {path} has no column {column!r} (columns: {dataset.column_names})")
    dataset = dataset.select_columns([image_column, conversations_column])
    if image_column != "image":
        dataset = dataset.rename_column(image_column, "image")
    if conversations_column != "conversations":
        dataset = dataset.rename_column(conversations_column, "conversations")
    if with_keys:  # the row index (before ``limit``, which keeps the first rows)
        dataset = dataset.add_column("image_key", [str(i) for i in range(len(dataset))])
    return dataset


# ------------------------------------------------------------------------------------------ segmentation


def precompute_segmentations(
    dataset, image_processor, cache_dir: str | os.PathLike, batch_size: int = 16, num_proc: int | None = None
):
    """Add ``label_maps`` ((h, w) at the processor's ``label_size``; int16, or int32 above 32767 tokens; ``None``
    for text-only samples) and ``num_tokens`` (int32, 0 without image) with one cached ``datasets.map``.

    The cache file under ``cache_dir`` is named after the dataset's fingerprint and the segmentation settings,
    so a second run (or another rank) loads it instead of segmenting again.
    """
    import datasets

    from ..image_processing_subobject import SEGMENTATION_KEYS

    settings = {key: getattr(image_processor, key) for key in SEGMENTATION_KEYS}
    height, width = settings["label_size"]["height"], settings["label_size"]["width"]
    dtype = "int16" if (settings["max_tokens"] or 1 << 30) <= 32767 else "int32"
    features = dataset.features.copy()
    features["label_maps"] = datasets.Array2D((height, width), dtype)
    features["num_tokens"] = datasets.Value("int32")

    def segment(batch: dict, indices: list[int]) -> dict:
        present = [i for i, image in enumerate(batch["image"]) if image is not None]
        images = [load_rgb(batch["image"][i], f"sample {indices[i]}") for i in present]
        maps: list[np.ndarray | None] = [None] * len(batch["image"])
        for i, label_map in zip(present, image_processor.segment(images) if images else []):
            maps[i] = label_map.astype(dtype)
        batch["label_maps"] = maps
        batch["num_tokens"] = [0 if m is None else int(m.max()) + 1 for m in maps]
        return batch

    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    key = digest(
        [dataset._fingerprint, sorted((k, repr(v)) for k, v in settings.items()), _files_of(dataset)]
    )
    return dataset.map(
        segment,
        batched=True,
        batch_size=batch_size,
        with_indices=True,
        features=features,
        num_proc=num_proc,
        cache_file_name=str(cache_dir / f"segmentations-{key}.arrow"),
        new_fingerprint=f"segmentations-{key}",
        desc="segmenting images (once)",
    )


def _files_of(dataset) -> list[str | None]:
    """``caching.file_fingerprint`` of every image file of ``dataset`` (none for an HF dataset's images): part of
    the cache keys, so that an image changed in place is segmented again (its path, and so the dataset's own
    fingerprint, stay the same)."""
    from ..caching import file_fingerprint

    if getattr(dataset.features.get("image"), "dtype", None) != "string":
        return []
    return [file_fingerprint(path) for path in dataset["image"]]


def use_precomputed_segmentations(dataset, precomputed: str | os.PathLike, image_processor, cache_dir):
    """Add ``label_map_png`` (the 16-bit PNG of the label map; ``None`` without image) and ``num_tokens`` from a
    ``subobject-vlm precompute`` output, instead of segmenting: the boundary model is never run.

    ``dataset`` needs ``image_key`` (``load_conversations(..., with_keys=True)``). The precomputed settings
    must equal the image processor's (``DataError`` naming the difference). Samples whose image failed to
    precompute are dropped (logged); an image that was never precomputed, or whose file changed since (size or
    modification time), is a ``DataError``.
    """
    import datasets

    from ..data.precompute import check_settings, load_precomputed

    try:
        index = check_settings(precomputed, image_processor.segmentation_settings())
    except ValueError as error:
        raise DataError(str(error)) from None
    table = load_precomputed(precomputed).select_columns(["key", "label_map", "num_tokens", "fingerprint"])
    stored = dict(zip(table.data.column("key").to_pylist(), table.data.column("fingerprint").to_pylist()))
    row_of = {key: row for row, key in enumerate(stored)}
    failed = {f["key"]: f["error"] for f in index["failed"]}
    keys = dataset["image_key"]
    missing = sorted({k for k in keys if k is not None and k not in row_of and k not in failed})
    if missing:
        raise DataError(
            f"{len(missing)} image(s) of the training data are not in the precomputed dataset {precomputed} "
            f"(e.g. {', '.join(missing[:3])}): precompute the same images (same file, image folder or split)"
        )
    stored.update({f["key"]: f.get("fingerprint") for f in index["failed"]})
    _check_unchanged(dataset, stored, precomputed)
    dropped = [i for i, k in enumerate(keys) if k in failed]
    if dropped:
        logger.warning(
            f"dropped {len(dropped)} sample(s) whose image failed to precompute (see {precomputed}/precompute.json)"
        )
        dropped_set = set(dropped)
        dataset = dataset.select([i for i in range(len(dataset)) if i not in dropped_set])

    def attach(batch: dict) -> dict:
        rows = [row_of.get(key) for key in batch["image_key"]]
        found = table.select_columns(["label_map", "num_tokens"])[[r for r in rows if r is not None]]
        pngs, counts = iter(found["label_map"]), iter(found["num_tokens"])
        batch["label_map_png"] = [None if r is None else next(pngs) for r in rows]
        batch["num_tokens"] = [0 if r is None else next(counts) for r in rows]
        return batch

    features = dataset.features.copy()
    features["label_map_png"] = datasets.Value("binary")
    features["num_tokens"] = datasets.Value("int32")
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    key = digest([dataset._fingerprint, table._fingerprint, str(Path(precomputed).resolve())])
    return dataset.map(
        attach,
        batched=True,
        features=features,
        cache_file_name=str(cache_dir / f"precomputed-{key}.arrow"),
        new_fingerprint=f"precomputed-{key}",
        desc="reading precomputed label maps",
    )


def _check_unchanged(dataset, stored: dict[str, str | None], precomputed: str | os.PathLike) -> None:
    """``DataError`` naming the image files that changed since their label maps were precomputed: ``stored`` maps
    each key to ``caching.file_fingerprint`` at precompute time (``None``: a dataset row, not checked)."""
    now = _files_of(dataset) if any(fingerprint is not None for fingerprint in stored.values()) else []
    if not now:
        return  # no image files (an HF dataset's rows), or none fingerprinted
    changed = sorted(
        {
            path
            for key, path, fingerprint in zip(dataset["image_key"], dataset["image"], now)
            if stored.get(key) is not None and fingerprint != stored[key]
        }
    )
    if changed:
        raise DataError(
            f"{len(changed)} image(s) changed since they were precomputed into {precomputed} (e.g. "
            f"{', '.join(changed[:3])}): rerun subobject-vlm precompute with the same input and --out (it "
            "makes them again)"
        )


# ---------------------------------------------------------------------------------------------- tokens


def conversation_messages(turns: list[dict], has_image: bool, image_token: str, where: str) -> list[dict]:
    """LLaVA turns -> chat messages with typed content; ``image_token`` in user text becomes an image part.

    An image without any ``image_token`` in the text goes in front of the first user turn (LLaVA's rule).
    """
    messages, images_seen = [], 0
    for turn in turns:
        role = ROLES[turn["from"]]
        text = turn["value"]
        count = text.count(image_token)
        images_seen += count
        text = text.replace(image_token, "").strip() if count else text
        parts = [{"type": "image"}] * count + [{"type": "text", "text": text}]
        messages.append({"role": role, "content": parts})
    if has_image and images_seen == 0:
        first_user = next((m for m in messages if m["role"] == "user"), None)
        if first_user is None:
            raise DataError(f"{where}: has an image but no user turn to put it in")
        first_user["content"].insert(0, {"type": "image"})
        images_seen = 1
    if images_seen != int(has_image):
        raise DataError(
            f"{where}: the text has {images_seen} {image_token} tokens but the sample has {int(has_image)} image(s)"
        )
    if not any(m["role"] == "assistant" for m in messages):
        raise DataError(f"{where}: no assistant (gpt) turn to learn from")
    return messages


def tokenize_conversation(
    processor, messages: list[dict], num_tokens: int, max_length: int | None, where: str
) -> tuple[list[int], list[int]] | None:
    """Token ids and labels for one conversation, the image token expanded to ``num_tokens + 2`` placeholders.

    Labels are ``-100`` everywhere except the tokens of assistant turns (and an end-of-sequence token after
    each, added if the chat template does not emit one). Returns ``None`` when ``max_length`` would cut into
    the image placeholders or leave no assistant token.
    """
    tokenizer = processor.tokenizer

    def render(msgs: list[dict], generation_prompt: bool) -> str:
        return processor.apply_chat_template(msgs, tokenize=False, add_generation_prompt=generation_prompt)

    text = render(messages, False)
    spans = []
    for k, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before, through = render(messages[:k], True), render(messages[: k + 1], False)
        if not (through.startswith(before) and text.startswith(through)):
            raise DataError(
                f"{where}: the chat template does not render conversations prefix by prefix, so assistant turns "
                "cannot be located for the loss mask; use a template like DEFAULT_CHAT_TEMPLATE"
            )
        spans.append((len(before), len(through)))
    encoding = tokenizer(text, return_offsets_mapping=True, add_special_tokens=True)
    ids, offsets = encoding["input_ids"], encoding["offset_mapping"]
    eos = tokenizer.eos_token_id
    out_ids: list[int] = []
    labels: list[int] = []
    span_of = [next((s for s, (a, b) in enumerate(spans) if a <= start < b and end > start), None)
               for start, end in offsets]  # fmt: skip
    for j, (token, span) in enumerate(zip(ids, span_of)):
        if token == processor.image_token_id:
            count = int(num_image_placeholders(num_tokens))
            out_ids += [token] * count
            labels += [IGNORE_INDEX] * count
            continue
        out_ids.append(token)
        labels.append(token if span is not None else IGNORE_INDEX)
        last_of_span = span is not None and (j + 1 == len(ids) or span_of[j + 1] != span)
        if last_of_span and token != eos and eos is not None:
            out_ids.append(eos)
            labels.append(eos)
    if max_length is not None and len(out_ids) > max_length:
        image_positions = [i for i, t in enumerate(out_ids) if t == processor.image_token_id]
        if image_positions and image_positions[-1] >= max_length:
            return None
        out_ids, labels = out_ids[:max_length], labels[:max_length]
    if all(label == IGNORE_INDEX for label in labels):
        return None
    return out_ids, labels


def tokenize_conversations(
    dataset, processor, max_length: int | None, cache_dir: str | os.PathLike, num_proc: int | None = None
):
    """Add ``input_ids`` and ``labels`` (see :func:`tokenize_conversation`), drop ``conversations`` and the
    samples that do not fit ``max_length`` (logged). Cached under ``cache_dir`` like the segmentations."""
    image_token = processor.image_token

    def tokenize(sample: dict, index: int) -> dict:
        where = f"sample {index}"
        messages = conversation_messages(
            sample["conversations"], sample["image"] is not None, image_token, where
        )
        result = tokenize_conversation(processor, messages, sample["num_tokens"], max_length, where)
        ids, labels = result if result is not None else ([], [])
        return {"input_ids": ids, "labels": labels}

    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = processor.tokenizer
    vocabulary = (
        tokenizer.backend_tokenizer.to_str() if hasattr(tokenizer, "backend_tokenizer") else len(tokenizer)
    )
    key = digest([dataset._fingerprint, vocabulary, processor.chat_template, image_token, max_length])
    tokenized = dataset.map(
        tokenize,
        with_indices=True,
        remove_columns=["conversations"],
        num_proc=num_proc,
        cache_file_name=str(cache_dir / f"tokens-{key}.arrow"),
        new_fingerprint=f"tokens-{key}",
        desc="tokenizing conversations",
    )
    kept = tokenized.filter(
        lambda ids: len(ids) > 0,
        input_columns="input_ids",
        cache_file_name=str(cache_dir / f"tokens-{key}-kept.arrow"),
        new_fingerprint=f"tokens-{key}-kept",
    )
    dropped = len(tokenized) - len(kept)
    if dropped:
        logger.warning(
            f"dropped {dropped} of {len(tokenized)} samples: image tokens beyond max_length={max_length}"
        )
    if len(kept) == 0:
        raise DataError(f"no training sample fits max_length={max_length} with its image tokens")
    return kept


# ------------------------------------------------------------------------------------------- collation


class SubobjectCollator:
    """Pads text and packs the images of a batch for ``SubobjectLlavaForConditionalGeneration``.

    Each feature holds ``input_ids``/``labels`` (lists), ``image`` (path, PIL or ``None``), ``label_maps``
    ((h, w) or ``None``) or ``label_map_png`` (16-bit PNG bytes, from a precomputed dataset) and ``num_tokens``. Returns ``input_ids``/``attention_mask``/``labels`` (B, L)
    (right padding; labels -100 on padding) and, if any sample has an image, ``pixel_values`` (N, 3, H, W)
    float32, ``label_maps`` (N, h, w) int64 and ``num_tokens`` (N,) int64 for those N images in batch order.
    """

    def __init__(self, image_processor, pad_token_id: int, pad_to_multiple_of: int | None = None) -> None:
        self.image_processor = image_processor
        self.pad_token_id = pad_token_id
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        length = max(len(f["input_ids"]) for f in features)
        if self.pad_to_multiple_of:
            length = -(-length // self.pad_to_multiple_of) * self.pad_to_multiple_of
        batch = len(features)
        input_ids = torch.full((batch, length), self.pad_token_id, dtype=torch.long)
        labels = torch.full((batch, length), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((batch, length), dtype=torch.long)
        for i, feature in enumerate(features):
            n = len(feature["input_ids"])
            input_ids[i, :n] = torch.as_tensor(feature["input_ids"])
            labels[i, :n] = torch.as_tensor(feature["labels"])
            attention_mask[i, :n] = 1
        out = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
        with_image = [f for f in features if f.get("image") is not None]
        if with_image:
            from ..data.precompute import decode_label_map

            images = [load_rgb(f["image"], "batch image") for f in with_image]
            label_maps = [  # precomputed: the processor segments nothing
                decode_label_map(f["label_map_png"]) if "label_map_png" in f else np.asarray(f["label_maps"])
                for f in with_image
            ]
            inputs = self.image_processor(images, label_maps=label_maps, return_tensors="pt")
            for name in ("pixel_values", "label_maps", "num_tokens"):
                out[name] = inputs[name]
        return out


__all__ = [
    "IGNORE_INDEX",
    "DataError",
    "SubobjectCollator",
    "conversation_messages",
    "load_conversations",
    "image_key",
    "load_rgb",
    "make_synthetic_shapes",
    "precompute_segmentations",
    "read_records",
    "synthetic_vocabulary",
    "tokenize_conversation",
    "tokenize_conversations",
    "use_precomputed_segmentations",
]
