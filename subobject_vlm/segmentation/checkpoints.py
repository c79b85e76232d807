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


def is_hub_id(name: str) -> bool:
    """``hf-hub:owner/name``, or ``owner/name`` that is not an existing local path."""
    if name.startswith(HUB_PREFIX):
        return bool(_HUB_ID.match(name.removeprefix(HUB_PREFIX)))
    return bool(_HUB_ID.match(name)) and not Path(name).expanduser().exists()


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
        raise ValueError(f"no model {name!r} on the Hugging Face Hub") from None
    except Exception as error:  # noqa: BLE001 - connection refused, timeout, DNS: one clear line
        raise ValueError(
            f"cannot reach the Hugging Face Hub to fetch {name!r} ({type(error).__name__}); "
            "check the network, or pass a local checkpoint folder"
        ) from None
    return snapshot_download(name, allow_patterns=patterns)


def resolve_checkpoint(name: str | os.PathLike) -> str:
    """A local folder holding checkpoint ``name``: the folder itself (checked), or the snapshot of hub id
    ``name`` (``hf-hub:owner/name`` or ``owner/name``) from the cache or downloaded."""
    name = str(name)
    if name.startswith(HUB_PREFIX):
        return _resolve_hub_id(name.removeprefix(HUB_PREFIX))
    path = Path(name).expanduser()
    if path.exists():
        check_checkpoint_folder(path)
        return str(path)
    if not is_hub_id(name):
        raise ValueError(f"{name!r} is neither a local checkpoint folder nor a hub id (owner/name)")
    return _resolve_hub_id(name)


__all__ = ["HUB_PREFIX", "check_checkpoint_folder", "is_hub_id", "resolve_checkpoint"]
