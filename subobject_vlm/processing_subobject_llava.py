"""``SubobjectLlavaProcessor``: images + text -> model inputs, one ``<image>`` becoming ``n + 2`` placeholders.

>>> processor = SubobjectLlavaProcessor(image_processor=SubobjectImageProcessor(), tokenizer=tokenizer)
>>> prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
>>> inputs = processor(images=image, text=prompt, return_tensors="pt")
>>> inputs.keys()   # input_ids, attention_mask, pixel_values, label_maps, num_tokens, boxes

The only model-specific step is :meth:`SubobjectLlavaProcessor.replace_image_token`: an image cut into ``n``
regions occupies ``num_image_placeholders(n) = n + 2`` copies of the image token (start vector, ``n`` region
tokens, end vector), so prompts have a different length for every image. Everything else (image/text
count checks, chat templates, saving) comes from :class:`transformers.ProcessorMixin`.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import torch
from transformers.processing_utils import ProcessorMixin

from .configuration_subobject_llava import SubobjectLlavaConfig, num_image_placeholders

DEFAULT_IMAGE_TOKEN = "<image>"

DEFAULT_CHAT_TEMPLATE = (
    "{% macro render(content) %}"
    "{% if content is string %}"
    "{{ content }}"
    "{% else %}"
    "{% for part in content | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
    "{% for part in content | selectattr('type', 'equalto', 'text') %}{{ part['text'] }}{% endfor %}"
    "{% endif %}"
    "{% endmacro %}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}"
    "{% set prefix = '' %}"
    "{% else %}"
    "{% set prefix = message['role'].upper() + ': ' %}"
    "{% endif %}"
    "{{ prefix }}"
    "{% if message['role'] == 'assistant' %}"
    "{% generation %}{{ render(message['content']) }}{{ eos_token }}{% endgeneration %}"
    "{% else %}"
    "{{ render(message['content']) }}"
    "{% endif %}"
    "{{ ' ' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)
"""LLaVA-1.5 style (``USER: <image>\\n... ASSISTANT: ...</s>``); content may be a string or a list of typed parts.
Assistant turns are marked ``{% generation %}``, so ``return_assistant_tokens_mask`` and TRL's
``assistant_only_loss`` see exactly the tokens to learn (the reply and its end-of-sequence token)."""


_GENERATION_TAG = re.compile(r"{%-?\s*generation\s*-?%}")

_ASSISTANT_MASKED = (
    "{%- macro __source(messages, add_generation_prompt) +%}SOURCE{%+ endmacro -%}"
    "{%- set __state = namespace(before='') -%}"
    "{%- for message in messages -%}"
    "{%- set __after = __source(messages[:loop.index], false) -%}"
    "{%- set __piece = __after[__state.before | length:] -%}"
    "{%- if message['role'] == 'assistant' and not loop.first -%}"
    "{%- set __header = __source(messages[:loop.index0], true)[__state.before | length:] -%}"
    "{%- if __piece.startswith(__header) -%}"
    "{{ __header }}{%- set __piece = __piece[__header | length:] -%}"
    "{%- endif -%}"
    "{% generation %}{{ __piece }}{% endgeneration %}"
    "{%- else -%}{{ __piece }}{%- endif -%}"
    "{%- set __state.before = __after -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ __source(messages, true)[__state.before | length:] }}{%- endif -%}"
)

_PROBE = [
    {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is in the image ?"}]},
    {"role": "assistant", "content": [{"type": "text", "text": "A red square"}]},
    {"role": "user", "content": [{"type": "text", "text": "And its colour ?"}]},
    {"role": "assistant", "content": [{"type": "text", "text": "Red"}]},
]


def with_generation_markers(chat_template: str, **tokens: str) -> str | None:
    """``chat_template`` with each assistant turn marked ``{% generation %}`` (what ``return_assistant_tokens_mask``
    and TRL's ``assistant_only_loss`` read): as it is where it has the markers; else wrapped so that it renders
    exactly as before, each assistant turn's text after the template's own generation prompt (the reply and its
    end-of-turn tokens) being marked. ``None`` where the wrapped template does not render a probe chat exactly as
    the source (a template whose earlier turns change as turns are added). ``tokens``: ``bos_token``, ... for
    the probe.

    The wrapper renders the source once per prefix of the chat: turn ``i`` is what ``messages[:i + 1]`` adds to
    ``messages[:i]``, and the assistant's reply is what follows the source's generation prompt for ``messages[:i]``.
    """
    from transformers.utils.chat_template_utils import render_jinja_template

    if _GENERATION_TAG.search(chat_template):
        return chat_template
    wrapped = _ASSISTANT_MASKED.replace("SOURCE", chat_template)
    try:
        for chat, prompt in ((_PROBE, False), (_PROBE[:3], True)):
            [[source], _] = render_jinja_template(
                [chat], chat_template=chat_template, add_generation_prompt=prompt, **tokens
            )
            [[ours], [spans]] = render_jinja_template(
                [chat],
                chat_template=wrapped,
                add_generation_prompt=prompt,
                return_assistant_tokens_mask=True,
                **tokens,
            )
            replies = [m["content"][0]["text"] for m in chat if m["role"] == "assistant"]
            marked = [ours[start:end] for start, end in spans]
            if (
                ours != source
                or len(marked) != len(replies)
                or not all(text.lstrip().startswith(reply) for text, reply in zip(marked, replies))
            ):
                return None
    except Exception:  # noqa: BLE001 - a template the wrapper cannot carry: the caller keeps the source's
        return None
    return wrapped


def image_token_id(tokenizer, token: str) -> int | None:
    """Id of ``token`` if the tokenizer encodes it as exactly one token, else ``None``."""
    ids = tokenizer.encode(token, add_special_tokens=False)
    return int(ids[0]) if len(ids) == 1 and ids[0] != tokenizer.unk_token_id else None


def add_image_token(
    tokenizer, config: SubobjectLlavaConfig | None = None, image_token: str = DEFAULT_IMAGE_TOKEN
) -> int:
    """Make ``image_token`` a special token of ``tokenizer`` (added if missing) and return its id.

    With ``config``, also sets ``config.image_token_id`` to that id. The id may lie beyond the text model's
    vocabulary: placeholder positions never go through the word embeddings, so no resizing is needed.
    """
    token_id = image_token_id(tokenizer, image_token)
    if token_id is None:
        tokenizer.add_special_tokens(
            {"extra_special_tokens": [image_token]}, replace_extra_special_tokens=False
        )
        token_id = image_token_id(tokenizer, image_token)
    if token_id is None:  # pragma: no cover - a tokenizer that splits even added tokens
        raise ValueError(f"the tokenizer cannot encode {image_token!r} as one token")
    if config is not None:
        config.image_token_id = token_id
    return token_id


def _as_id_rows(token_ids: Any) -> tuple[list[list[int]], bool]:
    """Token ids (list, nested list, numpy array or tensor; 1-D or 2-D) -> (rows of ints, was 1-D)."""
    if isinstance(token_ids, (torch.Tensor, np.ndarray)):
        token_ids = token_ids.tolist()
    if isinstance(token_ids, int):
        return [[token_ids]], True
    token_ids = list(token_ids)
    if token_ids and not isinstance(token_ids[0], (list, tuple, torch.Tensor, np.ndarray)):
        return [[int(t) for t in token_ids]], True
    return [_as_id_rows(row)[0][0] for row in token_ids], False


class SubobjectLlavaProcessor(ProcessorMixin):
    r"""Image processor ([`SubobjectImageProcessor`]) + tokenizer + chat template for SubobjectLlava.

    Every ``image_token`` in ``text`` becomes ``num_image_placeholders(num_tokens[i]) = num_tokens[i] + 2``
    copies of it, ``num_tokens[i]`` being the number of regions the image processor found in image ``i``
    (images are matched to ``<image>`` tokens in reading order over the batch).

    Args:
        image_processor: a [`SubobjectImageProcessor`].
        tokenizer: a tokenizer that encodes ``image_token`` as one special token (see [`add_image_token`]).
        chat_template: Jinja chat template (default: the tokenizer's, else [`DEFAULT_CHAT_TEMPLATE`]).
        image_token: the image placeholder string (default ``"<image>"``).

    Returns from ``__call__`` a `BatchFeature` with ``input_ids``/``attention_mask`` (B, L) and the image
    processor's ``pixel_values`` (N, 3, H, W), ``label_maps`` (N, h, w) int64, ``num_tokens`` (N,) and
    ``boxes`` (sum num_tokens, 4). Truncation that would cut into (or drop) an image's placeholders raises a
    ``ValueError``; truncating text elsewhere is fine.
    """

    def __init__(
        self,
        image_processor=None,
        tokenizer=None,
        chat_template: str | None = None,
        image_token: str = DEFAULT_IMAGE_TOKEN,
        **kwargs,
    ) -> None:
        if tokenizer is None:
            raise ValueError("SubobjectLlavaProcessor needs a tokenizer")
        self.image_token = image_token
        self.image_token_id = image_token_id(tokenizer, image_token)
        if self.image_token_id is None:
            raise ValueError(
                f"the tokenizer does not encode the image token {image_token!r} as one token; call "
                "subobject_vlm.processing_subobject_llava.add_image_token(tokenizer, config) first"
            )
        if chat_template is None:
            chat_template = getattr(tokenizer, "chat_template", None) or DEFAULT_CHAT_TEMPLATE
        super().__init__(image_processor, tokenizer, chat_template=chat_template)

    def replace_image_token(self, image_inputs: dict, image_idx: int, **kwargs) -> str:
        """The text that stands for image ``image_idx``: ``num_tokens + 2`` image tokens."""
        return self.image_token * int(num_image_placeholders(int(image_inputs["num_tokens"][image_idx])))

    def _check_special_mm_tokens(self, text: list[str], text_inputs, modalities: list[str]) -> None:
        """Raise if truncation removed any image placeholder (the image tensors would no longer match)."""
        input_ids = text_inputs["input_ids"]
        rows = input_ids.tolist() if hasattr(input_ids, "tolist") else input_ids
        for i, (ids, sample) in enumerate(zip(rows, text)):
            kept = list(ids).count(self.image_token_id)
            needed = len(re.findall(re.escape(self.image_token), sample))
            if kept != needed:
                raise ValueError(
                    f"truncation cuts into the image tokens of sample {i}: its images need {needed} "
                    f"{self.image_token} tokens but only {kept} fit; raise max_length, shorten the text or "
                    "lower the image processor's max_tokens"
                )

    def _strip_image_tokens(self, token_ids: Any) -> tuple[list[list[int]], bool]:
        rows, single = _as_id_rows(token_ids)
        return [[t for t in row if t != self.image_token_id] for row in rows], single

    def batch_decode(self, sequences: Any, **kwargs) -> list[str]:
        """Decode (B, L) ids to B strings; image placeholder tokens are always left out."""
        rows, _ = self._strip_image_tokens(sequences)
        return self.tokenizer.batch_decode(rows, **kwargs)

    def decode(self, token_ids: Any, **kwargs) -> str | list[str]:
        """Decode one sequence of ids to a string, or a batch to a list of strings (as the tokenizer does);
        image placeholder tokens are always left out."""
        rows, single = self._strip_image_tokens(token_ids)
        return (
            self.tokenizer.decode(rows[0], **kwargs)
            if single
            else self.tokenizer.batch_decode(rows, **kwargs)
        )

    @property
    def model_input_names(self) -> list[str]:
        return list(
            dict.fromkeys([*self.tokenizer.model_input_names, *self.image_processor.model_input_names])
        )


__all__ = [
    "DEFAULT_CHAT_TEMPLATE",
    "DEFAULT_IMAGE_TOKEN",
    "SubobjectLlavaProcessor",
    "add_image_token",
    "image_token_id",
    "with_generation_markers",
]
