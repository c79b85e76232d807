"""BSDS500 in its original layout: ``images/<split>/<id>.jpg`` and ``groundTruth/<split>/<id>.mat``.

Each ``.mat`` holds several human annotations, ``groundTruth[0][k]['Segmentation'|'Boundaries']``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class BSDSSample:
    """One BSDS image and its human annotations.

    ``segmentations``: list of ``(H, W)`` int32 label maps, one per annotator.
    ``boundaries``: list of ``(H, W)`` bool boundary maps, one per annotator (thin, as shipped).
    """

    name: str
    image_path: Path
    segmentations: list[np.ndarray]
    boundaries: list[np.ndarray]


def find_bsds_root(root: str | os.PathLike | None = None) -> Path:
    """Resolve a BSDS500 folder: ``root`` if given, else ``$BSDS500_ROOT``, else ``../shared/data/BSDS500``."""
    if root is not None:
        candidates = [Path(root)]
    else:
        env = os.environ.get("BSDS500_ROOT")
        candidates = [Path(env)] if env else []
        candidates += [
            Path.cwd().parent / "shared/data/BSDS500",
            Path(__file__).resolve().parents[3] / "shared/data/BSDS500",
        ]
    for candidate in candidates:
        if candidate and (Path(candidate) / "groundTruth").is_dir() and (Path(candidate) / "images").is_dir():
            return Path(candidate)
    raise FileNotFoundError(
        f"no BSDS500 folder found (looked at {[str(c) for c in candidates if c]}); expected images/<split>/*.jpg "
        "and groundTruth/<split>/*.mat — pass the folder explicitly or set BSDS500_ROOT"
    )


def read_bsds_annotations(mat_path: str | os.PathLike) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Read one ground-truth ``.mat``: (label maps int32, boundary maps bool), one per annotator."""
    from scipy.io import loadmat

    try:
        ground_truth = loadmat(str(mat_path))["groundTruth"]
    except (KeyError, ValueError, OSError) as error:
        raise ValueError(f"{mat_path}: not a BSDS ground-truth .mat file ({error})") from None
    segmentations, boundaries = [], []
    for entry in ground_truth.ravel():
        segmentations.append(np.asarray(entry["Segmentation"][0][0], dtype=np.int32))
        boundaries.append(np.asarray(entry["Boundaries"][0][0]).astype(bool))
    return segmentations, boundaries


def load_bsds(
    root: str | os.PathLike | None = None, split: str = "val", limit: int | None = None
) -> list[BSDSSample]:
    """Load a BSDS500 split (``train``, ``val`` or ``test``), sorted by image id."""
    root = find_bsds_root(root)
    gt_dir, image_dir = root / "groundTruth" / split, root / "images" / split
    if not gt_dir.is_dir():
        raise FileNotFoundError(f"{gt_dir} does not exist: split {split!r} is not in {root}")
    samples = []
    for mat_path in sorted(gt_dir.glob("*.mat"))[:limit]:
        image_path = image_dir / f"{mat_path.stem}.jpg"
        if not image_path.exists():
            raise FileNotFoundError(f"{image_path} is missing for ground truth {mat_path}")
        segmentations, boundaries = read_bsds_annotations(mat_path)
        samples.append(BSDSSample(mat_path.stem, image_path, segmentations, boundaries))
    return samples


__all__ = ["BSDSSample", "find_bsds_root", "load_bsds", "read_bsds_annotations"]
