"""Caching: content keys (``digest`` of settings, ``image_digest`` of pixels) and a bounded least-recently-used
cache, safe to share between threads, that never travels with a copy.

Used by the ``Segmenter`` (label maps and boundary maps, by image content and settings), the demo, dataset
tokenization (shard and settings digests) and the token-efficiency experiment (its run keys).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from typing import Any

import numpy as np


def digest(obj: Any, digest_size: int = 8) -> str:
    """Short content key of settings, key lists and fingerprints: a hash of ``obj`` as JSON (sorted keys,
    tuples as lists, anything else by its ``str``); ``2 * digest_size`` hex characters."""
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=digest_size).hexdigest()


def image_digest(image: np.ndarray) -> str:
    """Content key of an image array: a hash of its pixels, dtype and shape (32 hex characters)."""
    header = f"{image.dtype}{image.shape}".encode()
    return hashlib.blake2b(header + np.ascontiguousarray(image).tobytes(), digest_size=16).hexdigest()


class LRUCache:
    """A bounded least-recently-used map, safe to share between threads; ``size`` 0 keeps nothing.

    Copying or pickling it (``deepcopy``, ``to_dict``, DataLoader workers) gives an empty cache of the same
    size: caches and their lock never travel.
    """

    def __init__(self, size: int) -> None:
        self.size = int(size)
        self._items: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key) -> Any | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key, value: Any) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)

    def __reduce__(self):
        return (LRUCache, (self.size,))

    def __deepcopy__(self, memo) -> LRUCache:
        return LRUCache(self.size)


__all__ = ["LRUCache", "digest", "image_digest"]
