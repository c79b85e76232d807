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
