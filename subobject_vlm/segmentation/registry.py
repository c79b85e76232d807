"""Named tokenizers, in one place (as timm's ``register_model`` / ``create_model``).

Every tokenizer has a kind:

- ``"boundary"``: a boundary model (``default``, ``gradient``, a DirectSAM / EdgeNet checkpoint folder or hub id,
  or one you register); its map becomes a label map through EPOC;
- ``"label_map"``: makes label maps directly (``patch``, ``slic``, ``felzenszwalb``, or one you register).

A name is a registered tokenizer, ``family:checkpoint`` for a registered family that loads checkpoints of one
architecture, a local checkpoint folder, or a hub id (``owner/name``, or ``hf-hub:owner/name``, always the hub)
of a DirectSAM / EdgeNet checkpoint. Anything else fails at once, listing the names.

>>> @register_boundary_model("my-edges")
... def my_edges(**options) -> BoundaryModel: ...          # .predict(images) -> boundary maps
>>> @register_label_map_tokenizer("my-grid")
... def my_grid(**options) -> LabelMapTokenizer: ...       # .label_maps(images, max_tokens) -> label maps
>>> create_tokenizer("my-edges"), tokenizer_kind("my-grid")

This module imports nothing heavy: listing names (``--help``) costs no torch import.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .checkpoints import HUB_PREFIX, check_checkpoint_folder, is_hub_id, resolve_checkpoint  # (re-exported)
from .options import BOUNDARY_MODEL_OPTIONS, DEVICE_OPTIONS, check_tokenizer_options

BOUNDARY = "boundary"  # a boundary map, then EPOC
LABEL_MAP = "label_map"  # label maps directly (no boundary map, no EPOC)
KINDS = (BOUNDARY, LABEL_MAP)
BASELINES = ("patch", "slic", "felzenszwalb")  # the built-in label-map tokenizers, registered below
DEFAULT_WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights" / "default"


@dataclass(frozen=True)
class TokenizerEntry:
    """One registered tokenizer: ``factory(**options)`` (a family's: ``factory(checkpoint, **options)``)."""

    name: str
    kind: str
    factory: Callable[..., Any]
    family: bool = False  # named "name:checkpoint"

    @property
    def summary(self) -> str:
        """The first line of the factory's docstring."""
        return (self.factory.__doc__ or "").strip().split("\n")[0]


_REGISTRY: dict[str, TokenizerEntry] = {}


def has_embedded_weights() -> bool:
    """Whether the package ships its learned boundary weights in ``weights/default`` (without them ``default``
    cannot load: it is an error, never a silent swap to another model)."""
    return (DEFAULT_WEIGHTS_DIR / "config.json").is_file() and (
        DEFAULT_WEIGHTS_DIR / "model.safetensors"
    ).is_file()


def register_tokenizer(
    name: str, kind: str, factory: Callable[..., Any] | None = None, *, family: bool = False
):
    """Register ``factory`` under ``name`` as a tokenizer of ``kind`` (``"boundary"`` or ``"label_map"``);
    usable as a decorator. With ``family=True`` the names are ``name:checkpoint`` and the factory is called
    as ``factory(checkpoint, **options)`` (``checkpoint``: a local folder or hub id, see ``resolve_checkpoint``).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][\w.-]*", name):
        raise ValueError(f"a tokenizer name is letters, digits, '_', '-' or '.', got {name!r}")

    def add(function: Callable[..., Any]) -> Callable[..., Any]:
        known = _REGISTRY.get(name)
        if known is not None and name in _BUILT_IN:
            raise ValueError(f"{name!r} is a built-in {known.kind} tokenizer; pick another name")
        _REGISTRY[name] = TokenizerEntry(name, kind, function, family)
        return function

    return add(factory) if factory is not None else add


def register_boundary_model(name: str, factory: Callable[..., Any] | None = None):
    """Register ``factory(**options) -> BoundaryModel`` under ``name``; usable as a decorator."""
    return register_tokenizer(name, BOUNDARY, factory)


def register_label_map_tokenizer(name: str, factory: Callable[..., Any] | None = None):
    """Register ``factory(**options) -> LabelMapTokenizer`` under ``name``; usable as a decorator."""
    return register_tokenizer(name, LABEL_MAP, factory)


def register_tokenizer_family(name: str, kind: str, factory: Callable[..., Any] | None = None):
    """Register ``factory(checkpoint, **options)`` for the names ``name:checkpoint`` (e.g. ``sam:owner/model``);
    usable as a decorator."""
    return register_tokenizer(name, kind, factory, family=True)


def registered_names(kind: str | None = None, *, families: bool = True) -> list[str]:
    """Registered tokenizer names (of ``kind``), boundary models first; a family is listed as ``name:``
    (``families=False``: left out, the names that need no checkpoint only)."""
    return [
        f"{entry.name}:" if entry.family else entry.name
        for wanted in (BOUNDARY, LABEL_MAP)
        for entry in _REGISTRY.values()
        if entry.kind == wanted and (kind is None or kind == wanted) and (families or not entry.family)
    ]


def _written(name: str) -> str:
    """A registered name as a user writes it: a family's ``name:`` as ``name:CHECKPOINT``."""
    return f"{name}CHECKPOINT" if name.endswith(":") else name


def family_names(kind: str | None = None) -> list[str]:
    """The registered families (of ``kind``) as their names are written: ``["sam:CHECKPOINT", ...]``."""
    return [_written(name) for name in registered_names(kind) if name.endswith(":")]


def describe_names(baselines: bool = True) -> str:
    """One line for help texts and errors; ``baselines=False`` for commands that need a boundary model."""

    def listed(kind: str) -> str:
        return ", ".join(_written(name) for name in registered_names(kind))

    described = f"{listed(BOUNDARY)} (boundary models), "
    if baselines:
        described += f"{listed(LABEL_MAP)} (label-map tokenizers), "
    return described + (
        "a local checkpoint folder, or a hub id such as chendelong/DirectSAM-1800px-0424 "
        "(hf-hub:owner/name is always the hub, even where a local folder has that name)"
    )


def _lookup(name: str) -> tuple[TokenizerEntry | None, str | None]:
    """``(entry, checkpoint)`` of a registered name or ``family:checkpoint``; ``(None, None)`` otherwise."""
    if name in _REGISTRY and not _REGISTRY[name].family:
        return _REGISTRY[name], None
    prefix, colon, checkpoint = name.partition(":")
    entry = _REGISTRY.get(prefix)
    if colon and entry is not None and entry.family:
        return entry, checkpoint
    return None, None


def check_tokenizer_name(name: str | os.PathLike) -> str:
    """``name`` as a string if it can name a tokenizer; otherwise ``ValueError`` listing the valid names."""
    name = str(name)
    entry, checkpoint = _lookup(name)
    if entry is not None and not entry.family:
        return name
    if entry is not None:
        if checkpoint and (Path(checkpoint).expanduser().exists() or is_hub_id(checkpoint)):
            return name
        raise ValueError(
            f"{name!r}: {entry.name}: takes a local checkpoint folder or a hub id (owner/name), "
            f"got {checkpoint!r}"
        )
    if Path(name).expanduser().exists() or is_hub_id(name):
        return name
    raise ValueError(f"unknown tokenizer {name!r}: use {describe_names()}")


def registry_entry(name: str | os.PathLike) -> TokenizerEntry | None:
    """The entry registered for ``name`` (a name or ``family:checkpoint``); ``None`` for checkpoints."""
    return _lookup(str(name))[0]


def tokenizer_kind(name: str | os.PathLike) -> str:
    """``"boundary"`` or ``"label_map"``: what tokenizer ``name`` makes (checkpoints: boundary models)."""
    name = check_tokenizer_name(name)
    entry, _ = _lookup(name)
    return BOUNDARY if entry is None else entry.kind


def create_tokenizer(name: str | os.PathLike, **options):
    """Build tokenizer ``name`` (uncached; ``api.load_tokenizer`` caches it): a ``BoundaryModel`` or a
    ``LabelMapTokenizer``, as ``tokenizer_kind(name)`` says."""
    name = check_tokenizer_name(name)
    entry, checkpoint = _lookup(name)
    if entry is not None:
        return entry.factory(checkpoint, **options) if entry.family else entry.factory(**options)
    from .predictor import BoundaryPredictor

    return BoundaryPredictor.from_pretrained(
        resolve_checkpoint(name, model_class="AutoModelForSemanticSegmentation"), **options
    )


def require_boundary_model(name: str | os.PathLike) -> str:
    """``name`` as a string if it names a boundary model; a label-map tokenizer has no boundary map:
    ``ValueError`` (and an unknown name lists the valid ones)."""
    if tokenizer_kind(name) != BOUNDARY:
        raise ValueError(
            f"{str(name)!r} is a label-map tokenizer: it has no boundary map; use segment(..., model={str(name)!r})"
        )
    return str(name)


def create_boundary_model(name: str | os.PathLike, **options):
    """Build the boundary model ``name`` (uncached; ``load_boundary_model`` caches it); a label-map tokenizer
    has no boundary map: ``ValueError``."""
    return create_tokenizer(require_boundary_model(name), **options)


@register_boundary_model("default")
def _default(**options):
    """The embedded EdgeNet (``weights/default``)."""
    if not has_embedded_weights():
        raise FileNotFoundError(
            f"the embedded default boundary model is missing from {DEFAULT_WEIGHTS_DIR} (config.json and "
            "model.safetensors; a build without the package data?): reinstall subobject-vlm, or name another "
            "model (e.g. --model gradient, the classical colour gradients)"
        )
    from .predictor import BoundaryPredictor

    return BoundaryPredictor.from_pretrained(DEFAULT_WEIGHTS_DIR, **options)


@register_boundary_model("gradient")
def _gradient(**options):
    """Classical CIELAB colour gradients (no learned weights)."""
    from .gradient import GradientBoundaryModel

    known = ("sigmas", "max_side")  # the options every boundary model takes do not apply: taken and ignored
    return GradientBoundaryModel(
        **check_tokenizer_options("the gradient tokenizer", options, known, BOUNDARY_MODEL_OPTIONS)
    )


def _baseline(method: str, options: dict):
    """The ``BaselineTokenizer`` of ``method``: it has no options, and runs on the CPU whatever the device."""
    from .baselines import BaselineTokenizer

    check_tokenizer_options(f"the {method} tokenizer", options, [], DEVICE_OPTIONS)
    return BaselineTokenizer(method)


@register_label_map_tokenizer("patch")
def _patch(**options):
    """A grid of near-square patches (as a ViT's), exactly max_tokens of them."""
    return _baseline("patch", options)


@register_label_map_tokenizer("slic")
def _slic(**options):
    """SLIC superpixels (scikit-image), merged to exactly max_tokens."""
    return _baseline("slic", options)


@register_label_map_tokenizer("felzenszwalb")
def _felzenszwalb(**options):
    """Felzenszwalb-Huttenlocher graph segments (scikit-image), merged to exactly max_tokens."""
    return _baseline("felzenszwalb", options)


@register_tokenizer_family("sam", LABEL_MAP)
def _sam(checkpoint: str, **options):
    """SAM's automatic masks as label maps (any SamModel checkpoint, e.g. facebook/sam-vit-base)."""
    from .mask_models import create_sam_tokenizer

    return create_sam_tokenizer(checkpoint, **options)


@register_tokenizer_family("sam_hq", LABEL_MAP)
def _sam_hq(checkpoint: str, **options):
    """SAM-HQ's automatic masks as label maps (any SamHQModel checkpoint, e.g. syscv-community/sam-hq-vit-base)."""
    from .mask_models import create_sam_hq_tokenizer

    return create_sam_hq_tokenizer(checkpoint, **options)


@register_tokenizer_family("sam2", LABEL_MAP)
def _sam2(checkpoint: str, **options):
    """SAM 2's automatic masks as label maps (any Sam2Model checkpoint, e.g. facebook/sam2.1-hiera-tiny)."""
    from .mask_models import create_sam2_tokenizer

    return create_sam2_tokenizer(checkpoint, **options)


@register_tokenizer_family("edgetam", LABEL_MAP)
def _edgetam(checkpoint: str, **options):
    """EdgeTAM's automatic masks as label maps (SAM 2's on-device variant, e.g. yonigozlan/EdgeTAM-hf)."""
    from .mask_models import create_edgetam_tokenizer

    return create_edgetam_tokenizer(checkpoint, **options)


@register_tokenizer_family("mask2former", LABEL_MAP)
def _mask2former(checkpoint: str, **options):
    """Mask2Former's panoptic segments as label maps (e.g. facebook/mask2former-swin-tiny-coco-panoptic)."""
    from .mask_models import create_mask2former_tokenizer

    return create_mask2former_tokenizer(checkpoint, **options)


@register_tokenizer_family("oneformer", LABEL_MAP)
def _oneformer(checkpoint: str, **options):
    """OneFormer's panoptic segments as label maps (e.g. shi-labs/oneformer_ade20k_swin_tiny)."""
    from .mask_models import create_oneformer_tokenizer

    return create_oneformer_tokenizer(checkpoint, **options)


_BUILT_IN = frozenset(_REGISTRY)  # the names registered above cannot be replaced

__all__ = [
    "BASELINES",
    "BOUNDARY",
    "DEFAULT_WEIGHTS_DIR",
    "HUB_PREFIX",
    "KINDS",
    "LABEL_MAP",
    "TokenizerEntry",
    "check_checkpoint_folder",
    "check_tokenizer_name",
    "create_boundary_model",
    "create_tokenizer",
    "describe_names",
    "family_names",
    "has_embedded_weights",
    "is_hub_id",
    "register_boundary_model",
    "register_label_map_tokenizer",
    "register_tokenizer",
    "register_tokenizer_family",
    "registered_names",
    "registry_entry",
    "require_boundary_model",
    "resolve_checkpoint",
    "tokenizer_kind",
]
