"""Where a checkpoint name's weights are: a local folder (checked) or a hub id (``owner/name``; ``hf-hub:owner/name``
is always the hub, as timm's), resolved from the local cache or downloaded, with a clear error in seconds when the
hub cannot be reached. Imports nothing of ours: the registry and the model wrappers both read it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
HUB_PREFIX = "hf-hub:"  # as timm's: "hf-hub:owner/name" is always the hub, never a local folder of that name
# what a hub snapshot fetches: configs (model, processor, tokenizer), safetensors weights, the model card, and the
# tokenizers' vocabularies (``vocab.json``, ``merges.txt``, sentencepiece ``*.model``: OneFormer's task text);
# never pickles (``*.bin``, ``*.pt``): they are refused, with the command that converts them
HUB_FILES = ("*.json", "*.safetensors", "*.md", "*.txt", "*.model")
_PICKLED = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def is_hub_id(name: str) -> bool:
    """``hf-hub:owner/name``, or ``owner/name`` that is not an existing local path."""
    if name.startswith(HUB_PREFIX):
        return bool(_HUB_ID.match(name.removeprefix(HUB_PREFIX)))
    return bool(_HUB_ID.match(name)) and not Path(name).expanduser().exists()


def check_checkpoint_folder(path: Path, model_class: str = "AutoModel") -> None:
    """A local checkpoint folder must hold ``config.json`` and safetensors weights; pickled weights are refused
    with the one command that converts them with ``model_class`` (the transformers class that loads the whole
    checkpoint: loading a pickle can run code, so do it only if you trust it)."""
    if not path.is_dir() or not (path / "config.json").is_file():
        raise ValueError(f"{str(path)!r} is not a checkpoint folder (no config.json)")
    if not any(path.glob("*.safetensors")):
        pickled = sorted(p.name for p in path.iterdir() if p.name.endswith(_PICKLED))
        if pickled:
            raise ValueError(
                f"{str(path)!r} holds pickled weights ({', '.join(pickled)}), which are never loaded here; if you "
                f'trust them, convert once: python -c "from transformers import {model_class}; '
                f"{model_class}.from_pretrained('{path}', use_safetensors=False).save_pretrained('{path}')\""
            )
        raise ValueError(f"{str(path)!r} has no weights (*.safetensors)")


def _has_checkpoint(folder: str) -> bool:
    """Whether a hub snapshot holds a config and safetensors weights (a cache may hold a config alone)."""
    return (Path(folder) / "config.json").is_file() and any(Path(folder).glob("*.safetensors"))


def _resolve_hub_id(name: str, model_class: str) -> str:
    """A local snapshot of hub checkpoint ``name``: from the cache, or downloaded; a clear error in seconds
    when it is not cached and the hub cannot be reached (``HF_HUB_OFFLINE=1``, no network), and before any
    download when the hub repository holds pickled weights only."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError

    cached = None
    try:
        cached = snapshot_download(name, allow_patterns=list(HUB_FILES), local_files_only=True)
        if _has_checkpoint(cached):
            return cached
    except (LocalEntryNotFoundError, OSError, ValueError):
        pass
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on"):
        where = (
            "is in the local Hugging Face cache without its config.json or safetensors weights"
            if cached
            else "is not in the local Hugging Face cache"
        )
        raise ValueError(f"{name!r} {where} and HF_HUB_OFFLINE is set") from None
    try:
        from huggingface_hub import HfApi

        files = [sibling.rfilename for sibling in HfApi().model_info(name, timeout=10).siblings or []]
    except RepositoryNotFoundError:
        raise ValueError(f"no model {name!r} on the Hugging Face Hub") from None
    except Exception as error:  # noqa: BLE001 - connection refused, timeout, DNS: one clear line
        raise ValueError(
            f"cannot reach the Hugging Face Hub to fetch {name!r} ({type(error).__name__}); "
            "check the network, or pass a local checkpoint folder"
        ) from None
    if not any(file.endswith(".safetensors") and "/" not in file for file in files):
        pickled = [file for file in files if file.endswith(_PICKLED) and "/" not in file]
        if not pickled:
            raise ValueError(f"the hub repository {name!r} holds no model weights at its top level")
        folder = name.rsplit("/", 1)[-1]
        raise ValueError(
            f"the hub repository {name!r} holds pickled weights only ({', '.join(pickled)}), which are never "
            "loaded here; if you trust them, convert once into a folder and pass that folder: python -c "
            f'"from huggingface_hub import snapshot_download; from transformers import {model_class}; '
            f"d = snapshot_download('{name}', local_dir='{folder}'); "
            f'{model_class}.from_pretrained(d, use_safetensors=False).save_pretrained(d)"'
        )
    folder = snapshot_download(name, allow_patterns=list(HUB_FILES))
    if not (Path(folder) / "config.json").is_file():
        raise ValueError(f"the hub repository {name!r} has no config.json: not a transformers checkpoint")
    return folder


def resolve_checkpoint(name: str | os.PathLike, model_class: str = "AutoModel") -> str:
    """A local folder holding checkpoint ``name``: the folder itself (checked), or the snapshot of hub id
    ``name`` (``hf-hub:owner/name`` or ``owner/name``) from the cache or downloaded. ``model_class``: the
    transformers class that loads it, named in the command that converts pickled weights."""
    name = str(name)
    if name.startswith(HUB_PREFIX):
        return _resolve_hub_id(name.removeprefix(HUB_PREFIX), model_class)
    path = Path(name).expanduser()
    if path.exists():
        check_checkpoint_folder(path, model_class)
        return str(path)
    if not is_hub_id(name):
        raise ValueError(f"{name!r} is neither a local checkpoint folder nor a hub id (owner/name)")
    return _resolve_hub_id(name, model_class)


__all__ = ["HUB_FILES", "HUB_PREFIX", "check_checkpoint_folder", "is_hub_id", "resolve_checkpoint"]
