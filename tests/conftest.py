"""Shared fixtures: tiny random models and small images, built once per session, never downloaded."""

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """A real 512x512 RGB photo (uint8) shipped with scikit-image."""
    from skimage import data

    return data.astronaut()


class Stripes:
    """A label-map tokenizer: ``max_tokens`` vertical stripes."""

    name = "test-stripes"

    def label_maps(self, images, max_tokens):
        return [
            np.repeat(
                (np.arange(im.shape[1]) * max_tokens // im.shape[1])[None].astype(np.int32), im.shape[0], 0
            )
            for im in images
        ]


@pytest.fixture
def scratch_registry(monkeypatch):
    """The tokenizer registry, restored after the test: what a test registers never reaches the others (the
    demo's comparisons and eval-bsds' default baselines list every registered label-map tokenizer)."""
    from subobject_vlm.segmentation import registry

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    return registry


def write_tiny_bsds(root: Path, counts: dict[str, int] | None = None, size: int = 96) -> Path:
    """A BSDS500-format folder (``images/<split>/<id>.jpg``, ``groundTruth/<split>/<id>.mat`` with two
    annotators) of rendered scenes: what BSDS tests need on a machine without the shared data."""
    from PIL import Image
    from scipy.io import savemat

    from subobject_vlm.data.clevr_like import generate_scene
    from subobject_vlm.segmentation.visualize import label_boundaries

    for split, count in (counts or {"train": 4, "val": 3, "test": 2}).items():
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "groundTruth" / split).mkdir(parents=True, exist_ok=True)
        for index in range(count):
            scene = generate_scene(7, split, index, size)
            Image.fromarray(scene.image).save(root / "images" / split / f"{100 + index}.jpg", quality=95)
            fine = scene.instance_map + 1  # BSDS labels start at 1
            coarse = np.where(scene.instance_map > 0, 2, 1)  # a second annotator: objects vs background
            annotations = np.empty((1, 2), dtype=object)
            for k, segmentation in enumerate((fine, coarse)):
                annotations[0, k] = {
                    "Segmentation": segmentation.astype(np.uint16),
                    "Boundaries": label_boundaries(segmentation).astype(np.uint8),
                }
            savemat(root / "groundTruth" / split / f"{100 + index}.mat", {"groundTruth": annotations})
    return root


@pytest.fixture(scope="session")
def bsds_root(tmp_path_factory) -> Path:
    """The shared BSDS500 folder when there is one, else a tiny BSDS-format folder made here."""
    from subobject_vlm.data import find_bsds_root

    try:
        return find_bsds_root()
    except FileNotFoundError:
        return write_tiny_bsds(tmp_path_factory.mktemp("tiny-bsds"))


def tiny_vlm(max_tokens: int = 4):
    """A random tiny SubobjectLlava (32-pixel images) and its processor with a 2x2 patch tokenizer."""
    import torch

    from subobject_vlm import SubobjectImageProcessor, SubobjectLlavaProcessor
    from subobject_vlm.tiny import build_tiny_model, tiny_tokenizer

    tokenizer = tiny_tokenizer()
    torch.manual_seed(0)
    model = build_tiny_model(tokenizer, image_size=32)
    image_processor = SubobjectImageProcessor(
        boundary_model="patch",
        max_tokens=max_tokens,
        size={"height": 32, "width": 32},
        label_size={"height": 32, "width": 32},
    )
    return model, SubobjectLlavaProcessor(image_processor=image_processor, tokenizer=tokenizer)


def pytest_terminal_summary(terminalreporter) -> None:
    """Name every skipped test and why, right above the final count, even under ``-q`` (a browser test that
    skips where Chromium is missing should not pass unnoticed)."""
    skipped = terminalreporter.stats.get("skipped", [])
    if not skipped:
        return
    terminalreporter.write_line(f"{len(skipped)} skipped (run with -rs for details):")
    for report in skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        reason = reason.removeprefix("Skipped: ")
        terminalreporter.write_line(f"  {report.nodeid.split('::')[-1]}: {reason}")
