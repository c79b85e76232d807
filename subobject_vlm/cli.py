"""The ``subobject-vlm`` entry point; the commands live in ``subobject_vlm.commands``, one module each.

subobject-vlm segment INPUTS... --out DIR [--model NAME_OR_PATH] [--max-tokens N] [--threshold T] ...
subobject-vlm boundary | eval-bsds | train-boundary | convert | train | compare-tokenizers ...
"""

from __future__ import annotations

import sys

from .commands import build_parser, main

__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    sys.exit(main())
