"""Tokens: LLaVA turns as chat messages, rendered by the processor's chat template, the image token expanded to the
image's placeholders, labels masking everything but the assistant turns."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ...caching import digest
from ...configuration_subobject_llava import num_image_placeholders
from ...data.llava import ROLES, DataError

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100


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
    span_of = [_span_of(start, end, spans) for start, end in offsets]  # the assistant turn of each token
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


def _span_of(start: int, end: int, spans: list[tuple[int, int]]) -> int | None:
    """The index of the span (an assistant turn's characters) a token of characters ``[start, end)`` starts in."""
    return next((s for s, (a, b) in enumerate(spans) if a <= start < b and end > start), None)


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


__all__ = ["IGNORE_INDEX", "conversation_messages", "tokenize_conversation", "tokenize_conversations"]
