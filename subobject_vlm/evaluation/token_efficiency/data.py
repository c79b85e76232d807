"""Data of a comparison: the splits in memory, label maps per tokenizer (cached), word tokens, batches."""

from __future__ import annotations

import hashlib
import sys
from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from ...atomic import save_npy
from ...training.config import ConfigError
from .config import ComparisonConfig, settings_digest


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
    (photos of other aspect ratios are squashed, as a fixed-size vision encoder would see them; a one-line
    warning says how many and from which sizes)."""
    from ...data.llava import DataError, normalise_turns

    records, sources, keys, path = _split_records(config, split, data_dir)
    images, index_of_key, image_of_sample, conversations, tasks = [], {}, [], [], []
    resized: Counter = Counter()  # (width, height) -> images of that size resized
    for i, (record, source, key) in enumerate(zip(records, sources, keys)):
        if key is None:
            raise DataError(f"{path}: record {i} has no image; the comparison needs an image per sample")
        if key not in index_of_key:
            index_of_key[key] = len(images)
            images.append(_load_image(config, source, f"{path}: record {i}", resized))
        image_of_sample.append(index_of_key[key])
        conversations.append(normalise_turns(record["conversations"], f"{path}: record {i}"))
        tasks.append(str(record.get("task", "caption")))
    if not images:
        raise DataError(f"{path}: no samples")
    if resized:
        sizes = ", ".join(f"{n} of {w}x{h}" for (w, h), n in resized.most_common())
        side = config.image_size
        print(
            f"warning: data.{split}: {sum(resized.values())} of {len(images)} images are not {side}x{side} "
            f"(image_size) and are resized (squashed) to it: {sizes}",
            file=sys.stderr,
        )
    return Split(np.stack(images), np.asarray(image_of_sample), conversations, tasks)


def _split_records(config: ComparisonConfig, split: str, data_dir: Path) -> tuple[list, list, list, Path]:
    """``(records, image sources, keys, path)`` of ``split``: a key per record (``None``: no image) so that an
    image shared by several records is decoded once."""
    if "synthetic" in config.data:
        path, image_folder, limit = _synthetic_split(config, split, data_dir), None, None
    else:
        source = config.data[split]
        path, image_folder, limit = Path(source["path"]), source.get("image_folder"), source.get("limit")
    if Path(path).suffix in (".json", ".jsonl"):
        from ...data.llava import read_records

        records = read_records(Path(path))[:limit]
        folder = Path(image_folder) if image_folder else Path(path).parent
        sources = [str((folder / r["image"]).resolve()) if r.get("image") else None for r in records]
        return records, sources, sources, path
    from ...training.vlm_data import load_conversations  # an HF dataset: images are PIL objects in the rows

    dataset = load_conversations(path, split=config.data[split].get("split", split), limit=limit)
    records = [{"conversations": row["conversations"], "image": row["image"]} for row in dataset]
    sources = [r["image"] for r in records]
    return records, sources, [None if image is None else i for i, image in enumerate(sources)], path


def _load_image(config: ComparisonConfig, source: Any, where: str, resized: Counter) -> np.ndarray:
    """One image as (S, S, 3) uint8 at ``image_size``; its original (width, height) counted in ``resized``
    when it had another size."""
    import cv2

    from ...data.llava import load_rgb

    rgb = load_rgb(source, where)
    size = (config.image_size, config.image_size)
    if rgb.shape[:2] == size:
        return rgb
    resized[rgb.shape[1], rgb.shape[0]] += 1
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


# ---------------------------------------------------------------------------------------------- tokens


def tokenizer_settings(config: ComparisonConfig, name: str, max_tokens: int) -> Any:
    """The ``SegmentationSettings`` of tokenizer ``name`` at ``max_tokens``: its config entry read as
    :class:`SubobjectImageProcessor` settings (the processor a user would run), defaults filled in."""
    from ...image_processing_subobject import SubobjectImageProcessor

    spec = {k: v for k, v in config.tokenizers[name].items() if k not in ("match", "budgets")}
    processor = SubobjectImageProcessor(cache_size=0, **spec, max_tokens=max_tokens)
    return processor.segmentation_settings()[0]


def segment_split(
    config: ComparisonConfig,
    name: str,
    max_tokens: int,
    split: str,
    data: Split,
    out_dir: Path,
    counts: np.ndarray | None = None,
    segmenter: Any = None,
) -> np.ndarray:
    """Label maps (N, h, w) int16 of tokenizer ``name`` at ``max_tokens`` (one of its budgets) for the images of
    ``data`` (split name ``split``), cached in ``out_dir`` (written atomically).

    ``counts`` (N,): per-image counts for a label-map tokenizer matched to another tokenizer (a baseline gives
    exactly them; a mask tokenizer at most: its masks are merged to the count, never split). ``segmenter``: a
    :class:`~subobject_vlm.segmentation.Segmenter` whose caches to share (``with_settings``), so that a boundary
    model runs once per image for every budget and EPOC setting of the experiment; default: a new one.
    """
    from dataclasses import replace

    from tqdm import tqdm

    from ...segmentation.segmenter import Segmenter

    settings = {k: v for k, v in config.tokenizers[name].items() if k not in ("match", "budgets")}
    key = settings_digest(
        settings, max_tokens, config.label_size, data.digest, None if counts is None else counts.tolist()
    )
    images = data.images
    path = out_dir / f"{name}-{max_tokens}-{split}-{key}.npy"
    if path.is_file():
        return np.load(path)
    label_size = (config.label_size, config.label_size)
    at_budget = tokenizer_settings(config, name, max_tokens)
    if segmenter is None:
        segmenter = Segmenter(at_budget, label_size, cache_size=len(images) + 1)
    segmenter = segmenter.with_settings(at_budget, label_size)

    def exactly(count: int):  # the segmenter for one image's exact count, sharing the caches
        return segmenter.with_settings(replace(at_budget, max_tokens=count), label_size)

    maps = np.empty((len(images), config.label_size, config.label_size), np.int16)
    chunk = 16
    steps = range(0, len(images), chunk)
    bar = tqdm(steps, desc=f"segment {split} {name}@{max_tokens}", file=sys.stderr, leave=False, disable=None)
    for start in bar:
        batch = list(images[start : start + chunk])
        if counts is None:
            label_maps = segmenter.label_maps(batch)
        else:  # a label-map tokenizer at the matched tokenizer's count for each image
            label_maps = [
                exactly(int(n)).label_maps([image])[0]
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


def attribute_groups(config: ComparisonConfig) -> dict[str, list[str]]:
    """The attribute groups scored one by one (group -> words): ``data.attribute_groups``; for the built-in
    scenes without ``attribute_words``, their count, size, material, colour and shape words; else none."""
    if "attribute_groups" in config.data:
        return {group: list(words) for group, words in config.data["attribute_groups"].items()}
    if "synthetic" in config.data and "attribute_words" not in config.data:
        from ...data.clevr_like import COLOURS, MATERIALS, NUMBERS, SHAPES, SIZES

        scenes = config.data["synthetic"]  # the counts its captions can say: min_objects..max_objects (3..10)
        return {
            "count": list(NUMBERS[scenes.get("min_objects", 3) : scenes.get("max_objects", 10) + 1]),
            "size": list(SIZES),
            "material": list(MATERIALS),
            "colour": list(COLOURS),
            "shape": list(SHAPES),
        }
    return {}


def attribute_words(config: ComparisonConfig) -> list[str]:
    """The words ``attribute_accuracy`` scores: ``data.attribute_words`` and every group's words; for the
    built-in scenes by default, the words only the image can tell (the groups of :func:`attribute_groups`)."""
    words = config.data.get("attribute_words", [])
    grouped = [word for words in attribute_groups(config).values() for word in words]
    return list(dict.fromkeys([*words, *grouped]))


def attribute_token_ids(config: ComparisonConfig, tokenizer) -> tuple[Any, Any]:
    """``(attribute_ids, reference_ids)`` for ``attribute_accuracy``: the token ids (:func:`word_token_ids`) of
    the words that name what is in the image (:func:`attribute_words`) and of the words after which a repeated
    word is a copy (``data.reference_words``, default ``["the"]``; see the config module). ``(None, None)`` when
    no attribute words are configured; ``ConfigError`` when none of them is a token of ``tokenizer``; a one-line
    warning names those that are not."""
    import torch

    words = attribute_words(config)
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
        print(
            f"warning: data.attribute_words {missing} are not single tokens of the text tokenizer and are "
            "not scored",
            file=sys.stderr,
        )
    attribute_ids = sorted({i for ids in found.values() for i in ids})
    reference_ids = sorted({i for ids in word_token_ids(tokenizer, references).values() for i in ids})
    return torch.tensor(attribute_ids, dtype=torch.long), torch.tensor(reference_ids, dtype=torch.long)


def attribute_group_ids(config: ComparisonConfig, tokenizer) -> dict[str, Any]:
    """Per group of :func:`attribute_groups`, the (G,) int64 token ids of its words (empty when the tokenizer
    keeps none of them whole: that group's accuracy is ``null``)."""
    import torch

    groups = {}
    for group, words in attribute_groups(config).items():
        ids = sorted({i for ids in word_token_ids(tokenizer, words).values() for i in ids})
        groups[group] = torch.tensor(ids, dtype=torch.long)
    return groups


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


def collate(
    tokens: TokenizedSplit,
    split: Split,
    label_maps: np.ndarray,
    num_tokens: np.ndarray,
    pixel_values: Any,
    indices: list[int],
    image_token_id: int,
    pad_token_id: int,
) -> dict:
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
