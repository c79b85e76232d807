"""Data of a comparison: the splits in memory, label maps per tokenizer (cached), word tokens, batches."""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from ...atomic import save_npy
from ...caching import digest
from ...training.config import ConfigError
from .config import ComparisonConfig


@dataclass
class Split:
    """One split held in memory: ``images`` (N, S, S, 3) uint8 at ``image_size`` (each distinct image once),
    and per sample its image index, conversation turns and task (``caption`` unless the data say otherwise)."""

    images: np.ndarray
    image_of_sample: np.ndarray
    conversations: list[list[dict]]
    tasks: list[str]

    @cached_property
    def digest(self) -> str:
        """Hash of the pixels, computed once: segmentation caches follow the images."""
        return hashlib.blake2b(self.images.tobytes(), digest_size=16).hexdigest()


def token_counts(label_maps: np.ndarray) -> np.ndarray:
    """Tokens per image of (N, h, w) label maps: (N,) int64."""
    return label_maps.reshape(len(label_maps), -1).max(1).astype(np.int64) + 1


def _synthetic_split(config: ComparisonConfig, split: str, data_dir: Path) -> Path:
    from ...data.clevr_like import make_clevr_like

    options = {"size": config.image_size, "seed": 0, **config.data["synthetic"]}
    counts = {"train": options.pop("train", 1000), "val": options.pop("val", 100)}
    count = counts[split]
    folder = data_dir / f"{split}-{count}-{settings_digest(options)}"
    if not (folder / "data.json").is_file():
        make_clevr_like(folder, split=split, num_images=count, **options)
    return folder / "data.json"


def load_split(config: ComparisonConfig, split: str, data_dir: Path) -> Split:
    """The records of ``split`` with their images decoded once and resized to ``image_size`` x ``image_size``
    (photos of other aspect ratios are squashed, as a fixed-size vision encoder would see them)."""
    import cv2

    from ...data.llava import DataError, load_rgb, normalise_turns, read_records

    if "synthetic" in config.data:
        path, image_folder, limit = _synthetic_split(config, split, data_dir), None, None
    else:
        source = config.data[split]
        path, image_folder, limit = Path(source["path"]), source.get("image_folder"), source.get("limit")
    if Path(path).suffix in (".json", ".jsonl"):
        records = read_records(Path(path))[:limit]
        folder = Path(image_folder) if image_folder else Path(path).parent
        sources = [str((folder / r["image"]).resolve()) if r.get("image") else None for r in records]
        keys = sources  # an image file shared by several records is decoded once
    else:  # an HF dataset: images are PIL objects in the rows
        from ...training.vlm_data import load_conversations

        dataset = load_conversations(path, split=config.data[split].get("split", split), limit=limit)
        records = [{"conversations": row["conversations"], "image": row["image"]} for row in dataset]
        sources = [r["image"] for r in records]
        keys = [None if image is None else i for i, image in enumerate(sources)]
    images, index_of_key, image_of_sample, conversations, tasks = [], {}, [], [], []
    size = (config.image_size, config.image_size)
    for i, (record, source, key) in enumerate(zip(records, sources, keys)):
        if key is None:
            raise DataError(f"{path}: record {i} has no image; the comparison needs an image per sample")
        if key not in index_of_key:
            rgb = load_rgb(source, f"{path}: record {i}")
            index_of_key[key] = len(images)
            images.append(
                cv2.resize(rgb, size, interpolation=cv2.INTER_AREA) if rgb.shape[:2] != size else rgb
            )
        image_of_sample.append(index_of_key[key])
        conversations.append(normalise_turns(record["conversations"], f"{path}: record {i}"))
        tasks.append(str(record.get("task", "caption")))
    if not images:
        raise DataError(f"{path}: no samples")
    return Split(np.stack(images), np.asarray(image_of_sample), conversations, tasks)


def settings_digest(*parts: Any) -> str:
    """The experiment's 12-character keys of settings (``results.jsonl`` holds them: their form stays)."""
    return digest(parts, digest_size=6)


# ---------------------------------------------------------------------------------------------- tokens


def segment_split(
    config: ComparisonConfig, name: str, max_tokens: int, split: str, data: Split, out_dir: Path,
    counts: np.ndarray | None = None, processor=None,
) -> np.ndarray:  # fmt: skip
    """Label maps (N, h, w) int16 of tokenizer ``name`` at ``max_tokens`` (a budget of the config's ``budgets``) for the images of ``data`` (split name
    ``split``), cached in ``out_dir``.

    ``counts`` (N,): exact per-image counts for a baseline matched to another tokenizer. Each image goes through
    :meth:`SubobjectImageProcessor.segment` (the processor a user would run); the file is written atomically.
    """
    from tqdm import tqdm

    from ...image_processing_subobject import SubobjectImageProcessor

    settings = {k: v for k, v in config.tokenizers[name].items() if k not in ("match", "budgets")}
    key = settings_digest(
        settings, max_tokens, config.label_size, data.digest, None if counts is None else counts.tolist()
    )
    images = data.images
    path = out_dir / f"{name}-{max_tokens}-{split}-{key}.npy"
    if path.is_file():
        return np.load(path)
    if processor is None:
        processor = SubobjectImageProcessor(cache_size=len(images) + 1)
    overrides = {
        **settings,
        "max_tokens": max_tokens,
        "label_size": {"height": config.label_size, "width": config.label_size},
    }
    maps = np.empty((len(images), config.label_size, config.label_size), np.int16)
    chunk = 16
    for start in tqdm(range(0, len(images), chunk), desc=f"segment {split} {name}@{max_tokens}", unit="batch",
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
    save_npy(path, maps)
    return maps


def build_text_tokenizer(config: ComparisonConfig, train: Split):
    """A pretrained LM's tokenizer, or a word-level one built from the training conversations."""
    text = config.model.get("text", {})
    if "pretrained" in text:
        from transformers import AutoTokenizer

        from ...processing_subobject_llava import add_image_token

        tokenizer = AutoTokenizer.from_pretrained(text["pretrained"])
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        add_image_token(tokenizer)
        return tokenizer
    from tokenizers import pre_tokenizers

    from ...tiny import tiny_tokenizer

    splitter = pre_tokenizers.Whitespace()
    words = {"USER", "ASSISTANT", ":"}
    for turns in train.conversations:
        for turn in turns:
            words.update(w for w, _ in splitter.pre_tokenize_str(turn["value"].replace("<image>", " ")))
    return tiny_tokenizer(sorted(words))


def word_token_ids(tokenizer, words: list[str]) -> dict[str, list[int]]:
    """Per word, every token id that is that word as the tokenizer writes it anywhere in a sentence: the token
    decodes to the word once surrounding spaces are stripped, ignoring case (word-level ``red``, byte-level BPE
    ``red`` at the start and ``Ġred`` mid-sentence, SentencePiece ``▁red``). Special tokens never match; a word
    the tokenizer splits into several pieces has no ids."""
    wanted = {word.strip().casefold(): word for word in words}
    special = set(tokenizer.all_special_ids)
    ids: dict[str, list[int]] = {word: [] for word in words}
    texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
    for i, text in enumerate(texts):
        word = wanted.get(text.strip().casefold())
        if word is not None and i not in special:
            ids[word].append(i)
    return ids


def attribute_token_ids(config: ComparisonConfig, tokenizer) -> tuple[Any, Any]:
    """``(attribute_ids, reference_ids)`` for ``attribute_accuracy``: the token ids (:func:`word_token_ids`) of
    the words that name what is in the image (``data.attribute_words``; for the synthetic scenes: counts, sizes,
    materials, colours, shapes) and of the words after which a repeated word is a copy (``data.reference_words``,
    default ``["the"]``; see the config module). ``(None, None)`` when no attribute words are configured;
    ``ConfigError`` when none of them is a token of ``tokenizer``; a one-line warning names those that are not."""
    import torch

    from ...data.clevr_like import ATTRIBUTE_WORDS

    words = config.data.get("attribute_words", list(ATTRIBUTE_WORDS) if "synthetic" in config.data else [])
    if not words:
        return None, None
    references = config.data.get("reference_words", ["the"])
    found = word_token_ids(tokenizer, words)
    missing = [word for word, ids in found.items() if not ids]
    if len(missing) == len(words):
        raise ConfigError(
            f"data.attribute_words: none of {words} is a single token of the text tokenizer, so attribute "
            "accuracy cannot be measured; name words the tokenizer keeps whole"
        )
    if missing:
        print(f"warning: data.attribute_words {missing} are not single tokens of the text tokenizer and are "
              "not scored", file=sys.stderr)  # fmt: skip
    attribute_ids = sorted({i for ids in found.values() for i in ids})
    reference_ids = sorted({i for ids in word_token_ids(tokenizer, references).values() for i in ids})
    return torch.tensor(attribute_ids, dtype=torch.long), torch.tensor(reference_ids, dtype=torch.long)


@dataclass
class TokenizedSplit:
    """Token ids with one image placeholder per sample (expanded per run to ``num_tokens + 2``)."""

    input_ids: list[np.ndarray]
    labels: list[np.ndarray]
    image_position: np.ndarray  # (N,) index of the single placeholder


def tokenize_split(processor, split: Split, max_length: int | None) -> TokenizedSplit:
    """Chat-template every conversation once; labels cover assistant turns only."""
    from ...training.vlm_data import DataError, conversation_messages, tokenize_conversation

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

    from ...configuration_subobject_llava import num_image_placeholders
    from ...training.vlm_data import IGNORE_INDEX

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
