"""Data for SubobjectLlava instruction tuning: LLaVA-style conversations, their label maps, tokens, collation.

Pipeline (segmentation runs once per image, never per training step; each step cached under ``cache_dir``)::

    load_conversations(source)                 # columns: image (path | PIL | None), conversations
      -> precompute_segmentations(...)         # + label_map_png (16-bit PNG at label_size), num_tokens
         or use_precomputed_segmentations(...) #   the same, from the output of `subobject-vlm precompute`
      -> tokenize_conversations(...)           # + input_ids, labels (-100 except assistant turns)
      -> SubobjectCollator(...)                # pads text, loads + normalises pixels, packs per-image tensors

A LLaVA JSON/JSONL record is ``{"image": "rel/path.jpg", "conversations": [{"from": "human", "value":
"<image>\\nWhat is this?"}, {"from": "gpt", "value": "A cat."}, ...]}``; ``image`` is optional (text-only).

One module per role: ``conversations`` (reading the records), ``label_maps`` (the label-map store, in
``subobject-vlm precompute``'s format), ``tokens`` (chat template, loss mask), ``collator``.
"""

from ...data.llava import DataError, image_key, load_rgb, read_records
from ...data.synthetic_shapes import make_synthetic_shapes, synthetic_vocabulary
from .collator import SubobjectCollator
from .conversations import load_conversations
from .label_maps import precompute_segmentations, use_precomputed_segmentations
from .tokens import IGNORE_INDEX, conversation_messages, tokenize_conversation, tokenize_conversations

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
