"""Label maps pinned before the one-path refactor (tests/data/pinned_label_maps.npz): every entry point keeps
giving them (the maps made with the defaults of that time name ``seeds="threshold"``, the default then). Baselines and EPOC on a given map are pure integer/float64 logic and must match exactly; paths
through the boundary model (float32 convolutions, whose last bits may differ on another CPU) must give the same
partition up to 0.5 % of the pixels."""

import numpy as np
import pytest
from conftest import REPO_ROOT

from subobject_vlm import SubobjectImageProcessor, epoc
from subobject_vlm.cli import main
from subobject_vlm.segmentation import segment

PINNED = np.load(REPO_ROOT / "tests" / "data" / "pinned_label_maps.npz")
EXACT = {"epoc_synthetic", "segment_felzenszwalb_20", "segment_patch_12", "segment_slic_20"}


def compute(name: str, astronaut: np.ndarray, tmp_path) -> np.ndarray:
    small = astronaut[::4, ::4]  # 128 x 128
    if name == "processor_default_64":
        return SubobjectImageProcessor(max_tokens=64, seeds="threshold").segment([astronaut])[0]
    if name == "processor_minima_128_min_area_30":
        processor = SubobjectImageProcessor(max_tokens=128, seeds="minima", min_area=30)
        return processor.segment([astronaut])[0]
    if name == "segment_default_32":
        return segment(small, "default", max_tokens=32, seeds="threshold")
    if name.startswith("segment_"):
        _, model, count = name.split("_")
        return segment(small, model, num_tokens=int(count))
    if name == "epoc_synthetic":
        rng = np.random.default_rng(0)
        probs = np.clip(rng.random((64, 80)) ** 3 + np.eye(64, 80), 0, 1).astype(np.float32)
        return epoc(probs, 0.2, max_tokens=24, seeds="minima")
    if name == "cli_chelsea_32":
        image = REPO_ROOT / "examples" / "images" / "chelsea.jpg"
        argv = ["segment", str(image), "--out", str(tmp_path), "--max-tokens", "32", "--seeds", "threshold"]
        argv += ["--save-labels", "npy"]
        assert main(argv) == 0
        return np.load(tmp_path / "chelsea.npy")
    raise KeyError(name)


def partition_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of pixels whose label in ``b`` is the one most of their ``a`` region has (1.0: same partition)."""
    pairs = a.astype(np.int64).ravel() * (int(b.max()) + 1) + b.ravel()
    counts = np.bincount(pairs)
    best = np.zeros(int(a.max()) + 1, np.int64)
    np.maximum.at(best, np.nonzero(counts)[0] // (int(b.max()) + 1), counts[np.nonzero(counts)[0]])
    return float(best.sum() / a.size)


@pytest.mark.parametrize("name", sorted(PINNED.files))
def test_label_maps_stay_as_pinned(name, astronaut, tmp_path):
    label_map, pinned = compute(name, astronaut, tmp_path), PINNED[name]
    assert label_map.shape == pinned.shape
    if name in EXACT:
        np.testing.assert_array_equal(label_map, pinned)
    else:
        assert abs(int(label_map.max()) - int(pinned.max())) <= 1
        assert min(partition_agreement(pinned, label_map), partition_agreement(label_map, pinned)) >= 0.995
