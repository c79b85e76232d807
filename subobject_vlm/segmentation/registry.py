"""Named tokenizers, in one place (as timm's ``register_model`` / ``create_model``).

A tokenizer name is a registered boundary model (``default``, ``gradient``, or one you register), a baseline
(``patch``, ``slic``, ``felzenszwalb``: label maps without a boundary map), a local checkpoint folder, or a
hub id (``owner/name``) of a DirectSAM / EdgeNet checkpoint. Anything else fails at once, listing the names.

>>> @register_boundary_model("my-edges")
... def my_edges(**options) -> BoundaryModel: ...
>>> create_boundary_model("my-edges")

This module imports nothing heavy: listing names (``--help``) costs no torch import.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

BASELINES = ("patch", "slic", "felzenszwalb")  # label-map tokenizers (no boundary map, no EPOC)
DEFAULT_WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights" / "default"
_FACTORIES: dict[str, Callable[..., Any]] = {}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
HUB_PREFIX = "hf-hub:"  # as timm's: "hf-hub:owner/name" is always the hub, never a local folder of that name


def has_embedded_weights() -> bool:
    """Whether the package ships its learned boundary weights in ``weights/default`` (without them ``default``
    cannot load: it is an error, never a silent swap to another model)."""
    return (DEFAULT_WEIGHTS_DIR / "config.json").is_file() and (
        DEFAULT_WEIGHTS_DIR / "model.safetensors"
    ).is_file()


def register_boundary_model(name: str, factory: Callable[..., Any] | None = None):
    """Register ``factory(**options) -> BoundaryModel`` under ``name``; usable as a decorator."""

    def add(function: Callable[..., Any]) -> Callable[..., Any]:
        if name in BASELINES:
            raise ValueError(f"{name!r} is a baseline name; pick another")
        _FACTORIES[name] = function
        return function

    return add(factory) if factory is not None else add


def registered_names() -> list[str]:
    """Every registered tokenizer name: boundary models, then baselines."""
    return [*_FACTORIES, *BASELINES]


def describe_names(baselines: bool = True) -> str:
    """One line for help texts and errors; ``baselines=False`` for commands that need a boundary model."""
    listed = f"{', '.join(_FACTORIES)} (boundary models), "
    if baselines:
        listed += f"{', '.join(BASELINES)} (baselines), "
    return listed + (
        "a local checkpoint folder, or a hub id such as chendelong/DirectSAM-1800px-0424 "
        "(hf-hub:owner/name is always the hub, even where a local folder has that name)"
    )


def is_hub_id(name: str) -> bool:
    """``hf-hub:owner/name``, or ``owner/name`` that is not an existing local path."""
    if name.startswith(HUB_PREFIX):
        return bool(_HUB_ID.match(name.removeprefix(HUB_PREFIX)))
    return bool(_HUB_ID.match(name)) and not Path(name).expanduser().exists()


def check_tokenizer_name(name: str | os.PathLike) -> str:
    """``name`` as a string if it can name a tokenizer; otherwise ``ValueError`` listing the valid names."""
    name = str(name)
    if name in _FACTORIES or name in BASELINES or Path(name).expanduser().exists() or is_hub_id(name):
        return name
    raise ValueError(f"unknown tokenizer {name!r}: use {describe_names()}")


def check_checkpoint_folder(path: Path) -> None:
    """A local checkpoint folder must hold ``config.json`` and safetensors weights; pickled weights are refused
    with the one command that converts them (loading a pickle can run code: do it only if you trust it)."""
    if not path.is_dir() or not (path / "config.json").is_file():
        raise ValueError(f"{str(path)!r} is not a checkpoint folder (no config.json)")
    if not any(path.glob("*.safetensors")):
        pickled = sorted(p.name for p in path.glob("*.bin")) + sorted(p.name for p in path.glob("*.pt*"))
        if pickled:
            raise ValueError(
                f"{str(path)!r} holds pickled weights ({', '.join(pickled)}), which are never loaded here; if you "
                'trust them, convert once: python -c "from transformers import AutoModel; '
                f"AutoModel.from_pretrained('{path}', use_safetensors=False).save_pretrained('{path}')\""
            )
        raise ValueError(f"{str(path)!r} has no weights (*.safetensors)")


def _resolve_hub_id(name: str) -> str:
    """A local snapshot of hub checkpoint ``name``: from the cache, or downloaded; a clear error in seconds
    when it is not cached and the hub cannot be reached (``HF_HUB_OFFLINE=1``, no network)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError

    patterns = ["*.json", "*.safetensors", "*.md"]
    try:
        return snapshot_download(name, allow_patterns=patterns, local_files_only=True)
    except (LocalEntryNotFoundError, OSError, ValueError):
        pass
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on"):
        raise ValueError(
            f"{name!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set"
        ) from None
    try:
        from huggingface_hub import HfApi

        HfApi().model_info(name, timeout=10)
    except RepositoryNotFoundError:
        raise ValueError(f"no model {name!r} on the Hugging Face Hub; use {describe_names()}") from None
    except Exception as error:  # noqa: BLE001 - connection refused, timeout, DNS: one clear line
        raise ValueError(
            f"cannot reach the Hugging Face Hub to fetch {name!r} ({type(error).__name__}); "
            "check the network, or pass a local checkpoint folder"
        ) from None
    return snapshot_download(name, allow_patterns=patterns)


def create_boundary_model(name: str | os.PathLike, **options):
    """Build the boundary model ``name`` (uncached; ``load_boundary_model`` caches it)."""
    name = check_tokenizer_name(name)
    if name in BASELINES:
        raise ValueError(
            f"{name!r} is a baseline tokenizer: it has no boundary map; use segment(..., model={name!r})"
        )
    if name in _FACTORIES:
        return _FACTORIES[name](**options)
    from .predictor import BoundaryPredictor

    if name.startswith(HUB_PREFIX):
        return BoundaryPredictor.from_pretrained(_resolve_hub_id(name.removeprefix(HUB_PREFIX)), **options)
    path = Path(name).expanduser()
    if path.exists():
        check_checkpoint_folder(path)
        return BoundaryPredictor.from_pretrained(str(path), **options)
    return BoundaryPredictor.from_pretrained(_resolve_hub_id(name), **options)


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

    return GradientBoundaryModel(**{k: v for k, v in options.items() if k in ("sigmas", "max_side")})


__all__ = [
    "DEFAULT_WEIGHTS_DIR",
    "HUB_PREFIX",
    "check_checkpoint_folder",
    "check_tokenizer_name",
    "create_boundary_model",
    "describe_names",
    "has_embedded_weights",
    "is_hub_id",
    "register_boundary_model",
    "registered_names",
]
