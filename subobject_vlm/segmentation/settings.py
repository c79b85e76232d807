"""How an image becomes a label map, in one frozen object: the tokenizer and EPOC's options, validated once.

>>> settings = SegmentationSettings(boundary_model="default", max_tokens=64, seeds="minima")
>>> label_map = segment_image(image, settings)                  # segmentation.api: the one path
>>> label_map = segment_image(image, settings, boundary_probs=probs)   # a boundary map computed elsewhere

Its ``repr`` names every setting, so it is the cache key of the processor; ``dataclasses.replace`` makes a
variant (``replace(settings, max_tokens=16)``), validated again. A command's options become settings once:
``SegmentationSettings.from_args(args)`` (the options: ``commands._options.add_segmentation_arguments``).

The token budget has one name everywhere, ``max_tokens``, and one check, ``check_max_tokens``.
"""

from __future__ import annotations

import numbers
import os
import re
from dataclasses import asdict, dataclass, replace
from typing import Any

from .options import (  # re-exported: the settings gather every option
    ASSIGN_MODES,
    DEFAULT_MAX_TOKENS,
    DEFAULT_SEEDS,
    MERGE_ORDERS,
    SEED_MODES,
    check_epoc_options,
    check_max_tokens,
)
from .registry import (  # imports nothing of ours
    BASELINES,
    BOUNDARY,
    check_tokenizer_name,
    registry_entry,
)

EXECUTION_OPTIONS = ("device", "batch_size")  # how a boundary model runs, not what it outputs
EPOC_FIELDS = ("threshold", "max_tokens", "min_area", "merge", "assign", "seeds")  # EPOC's options, by name
MODEL_OPTION_ARGS = ("resolution", "keep_aspect", "pyramid_layers", "device", "dtype")  # the commands' flags
DEVICE_NAME = re.compile(r"^(cpu|cuda|mps|xpu)(:\d+)?$")  # the devices a boundary model can run on, by name

DEFAULT_LABEL_SIZE = (336, 336)  # (height, width) of the label maps: the processor's, and precompute's


def output_options(model_options: dict[str, Any]) -> dict[str, Any]:
    """The boundary-model options that decide its output: without the execution options (device, batch size)
    and without ``dtype: float32``, every model's default. Equal ``output_options``, equal boundary maps."""
    return {
        key: value
        for key, value in model_options.items()
        if key not in EXECUTION_OPTIONS and not (key == "dtype" and value == "float32")
    }


@dataclass(frozen=True)
class SegmentationSettings:
    """A tokenizer and its options.

    Args:
        boundary_model: the tokenizer's name (``registry``): a boundary model (``"default"``, embedded;
            ``"gradient"``; a DirectSAM / EdgeNet hub id or local folder) or a label-map tokenizer (``"patch"``,
            ``"slic"``, ``"felzenszwalb"``, ...), which makes label maps directly.
        boundary_model_options: options of the boundary model (``resolution``, ``keep_aspect``, ``device``,
            ``dtype``, ``batch_size``, ...); a dict is accepted and kept as sorted ``(key, value)`` pairs.
        threshold, max_tokens, min_area, merge, assign, seeds: EPOC's options (see ``epoc``); for a baseline
            ``max_tokens`` is the exact number of regions (``DEFAULT_MAX_TOKENS`` when ``None``); a label-map
            tokenizer reads ``max_tokens`` only.
        pad_color: ``(r, g, b)`` 0-255: the image processor pads each image to a square of this colour (centred,
            LLaVA-1.5's pad-to-square) before it is segmented; ``None`` (default): not padded.
    """

    boundary_model: str = "default"
    boundary_model_options: tuple[tuple[str, Any], ...] = ()
    threshold: float = 0.1
    max_tokens: int | None = DEFAULT_MAX_TOKENS
    min_area: int = 0
    merge: str = "weakest_boundary"
    assign: str = "watershed"
    seeds: str = DEFAULT_SEEDS
    pad_color: tuple[int, int, int] | None = None

    def __post_init__(self) -> None:
        model = self.boundary_model
        if not isinstance(model, (str, os.PathLike)) or not str(model):
            raise ValueError(f"boundary_model must be a name or path, got {model!r}")
        object.__setattr__(self, "boundary_model", str(model))
        options = self.boundary_model_options
        if options is None:
            options = ()
        elif isinstance(options, dict):
            options = tuple(options.items())
        try:
            options = tuple(sorted((str(k), v) for k, v in options))
        except (TypeError, ValueError):
            raise ValueError(
                f"boundary_model_options must be a dict, got {self.boundary_model_options!r}"
            ) from None
        object.__setattr__(self, "boundary_model_options", options)
        check_epoc_options(
            self.threshold, self.max_tokens, self.min_area, self.merge, self.assign, self.seeds
        )
        if self.pad_color is not None:
            color = self.pad_color
            if (
                isinstance(color, (str, bytes))
                or not hasattr(color, "__len__")
                or len(color) != 3
                or not all(
                    isinstance(c, numbers.Integral) and not isinstance(c, bool) and 0 <= c <= 255
                    for c in color
                )
            ):
                raise ValueError(
                    f"pad_color must be None or three integers in [0, 255] (r, g, b), got {color!r}"
                )
            object.__setattr__(self, "pad_color", tuple(int(c) for c in color))

    @property
    def kind(self) -> str:
        """``"boundary"`` (a boundary map, then EPOC) or ``"label_map"`` (label maps directly): the registry's
        ``tokenizer_kind``; a name the registry does not know (a custom model's) is a boundary model."""
        entry = registry_entry(self.boundary_model)
        return BOUNDARY if entry is None else entry.kind

    @property
    def model_options(self) -> dict[str, Any]:
        return dict(self.boundary_model_options)

    @property
    def epoc_options(self) -> dict[str, Any]:
        """Keyword arguments of ``epoc``."""
        return {name: getattr(self, name) for name in EPOC_FIELDS}

    @classmethod
    def from_args(
        cls, args: Any, base: SegmentationSettings | None = None, **values: Any
    ) -> SegmentationSettings:
        """The settings a command's parsed options name (``commands._options.add_segmentation_arguments``).

        Each option given replaces ``base``'s (default: ``SegmentationSettings()``, the one set of defaults); an
        option not given (``None``) or that the command lacks keeps it: ``precompute --processor CKPT`` passes
        the saved processor's settings as ``base``. ``values`` stand for options of ``args`` (``eval-bsds``: one
        ``max_tokens`` of its sweep). The tokenizer and device names are checked here, before torch loads; the
        rest by the settings themselves: validated once, here.
        """
        given = {**vars(args), **values}
        base = cls() if base is None else base
        model = given.get("model")
        if model is not None:
            check_tokenizer_name(model)
        given_options = {key: given[key] for key in MODEL_OPTION_ARGS if given.get(key) is not None}
        for key, value in given.get("model_option") or ():  # --model-option KEY=VALUE, repeatable
            if key in EPOC_FIELDS:
                raise ValueError(
                    f"--model-option {key}: EPOC's option, not the model's: pass --{key.replace('_', '-')}"
                )
            if key in given_options and given_options[key] != value:
                raise ValueError(
                    f"--model-option {key}={value!r} contradicts {key}={given_options[key]!r}, given too"
                )
            given_options[key] = value
        device = given_options.get("device")
        if device is not None and not DEVICE_NAME.match(str(device)):
            raise ValueError(f"device must be cpu, cuda, cuda:N, mps or xpu, got {device!r}")
        return replace(
            base,
            boundary_model=base.boundary_model if model is None else model,
            boundary_model_options={**base.model_options, **given_options},
            **{key: given[key] for key in EPOC_FIELDS if given.get(key) is not None},
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings (options as a dict; ``pad_color`` only where images are padded, so records of
        unpadded label maps are as before)."""
        record = {**asdict(self), "boundary_model_options": self.model_options}
        if self.pad_color is None:
            del record["pad_color"]
        else:
            record["pad_color"] = list(self.pad_color)
        return record


__all__ = [
    "ASSIGN_MODES",
    "BASELINES",
    "DEFAULT_MAX_TOKENS",
    "DEFAULT_SEEDS",
    "DEVICE_NAME",
    "EPOC_FIELDS",
    "EXECUTION_OPTIONS",
    "MERGE_ORDERS",
    "MODEL_OPTION_ARGS",
    "SEED_MODES",
    "SegmentationSettings",
    "check_epoc_options",
    "check_max_tokens",
    "output_options",
]
