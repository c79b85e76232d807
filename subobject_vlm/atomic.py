"""Atomic file writes: a reader (or a rerun after a crash) sees either the old file or the complete new one,
never a torn one.

The content goes to a temporary name in the destination's own folder (same filesystem, so the final
``os.replace`` is atomic), is flushed and fsync'd, and only then takes the final name. A process killed at any
point leaves at most a ``.<name>.subobject-vlm-<random>.tmp`` file, which :func:`remove_stale_temporaries`
clears. The ``subobject-vlm`` marker makes our temporaries ours: files of other programs that happen to end in
``.tmp`` (a ``.git/objects`` folder, an editor's swap files) are never taken for them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

TMP_MARKER = ".subobject-vlm-"  # between the destination's name and mkstemp's random part
TMP_SUFFIX = ".tmp"
_OURS = re.compile(rf"^\.(?P<name>.+){re.escape(TMP_MARKER)}[A-Za-z0-9_]+{re.escape(TMP_SUFFIX)}$")
_UMASK = os.umask(0o022)  # read once (os.umask can only be read by setting it), then restored
os.umask(_UMASK)


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (no-op where directories cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """``open`` for writing that publishes the file under ``path`` only when the block ends without error.

    Use it as ``with atomic_open(out / "x.png") as f: image.save(f, format="PNG")``. On an exception the
    temporary file is removed and ``path`` is untouched.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_open writes whole files: mode must be 'wb' or 'w', got {mode!r}")
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}{TMP_MARKER}", suffix=TMP_SUFFIX, dir=path.parent)
    try:
        os.chmod(tmp_name, 0o666 & ~_UMASK)  # as open() would create it (mkstemp makes 0600)
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    _fsync_dir(path.parent)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_open(path, "w") as handle:
        handle.write(text)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    with atomic_open(path, "w") as handle:
        json.dump(obj, handle, indent=2)
        handle.write("\n")


def save_npy(path: str | os.PathLike, array) -> None:
    """``numpy.save`` to ``path`` atomically (``path`` is used as given: no ``.npy`` is appended)."""
    import numpy as np

    with atomic_open(path, "wb") as handle:
        np.save(handle, array)


def save_image(path: str | os.PathLike, image, format: str = "PNG") -> None:
    """Save a PIL image atomically."""
    with atomic_open(path, "wb") as handle:
        image.save(handle, format=format)


def save_figure(path: str | os.PathLike, figure, **savefig_kwargs) -> None:
    """``figure.savefig`` to ``path`` atomically, in the format its suffix names."""
    with atomic_open(path, "wb") as handle:
        figure.savefig(handle, format=Path(path).suffix.lstrip(".") or "png", **savefig_kwargs)


def remove_stale_temporaries(folder: str | os.PathLike, names: Iterable[str] | None = None) -> list[Path]:
    """Delete the temporaries a killed writer of this package left in ``folder`` (not in its subfolders);
    returns what was removed. Only names with our marker are touched, never another program's ``*.tmp``. Call it
    only when no other writer is active there, or pass ``names``: only the temporaries of these destination
    file names (when other processes may be writing other files into the same folder right now, e.g. the
    ranks of a sharded job).
    """
    wanted = None if names is None else set(names)
    removed = []
    for tmp in Path(folder).glob(f".*{TMP_MARKER}*{TMP_SUFFIX}"):
        ours = _OURS.match(tmp.name)
        if ours is None or (wanted is not None and ours["name"] not in wanted):
            continue
        with contextlib.suppress(OSError):
            tmp.unlink()
            removed.append(tmp)
    return removed
