"""The faster tokenizer paths give the reference's outputs: EdgeNet's fast CPU path (OpenCV filters, percentiles by
``np.partition``, channels-last) against the pure-PyTorch reference; batched ``predict`` against one image at a
time; and, where CUDA is, half precision on the GPU against float32 on the CPU."""

import numpy as np
import pytest
import torch
from conftest import REPO_ROOT
from test_pinned_label_maps import partition_agreement

from subobject_vlm.image_utils import load_image
from subobject_vlm.segmentation import (
    DEFAULT_WEIGHTS_DIR,
    BoundaryPredictor,
    EdgeNetConfig,
    EdgeNetForBoundaryDetection,
    SegmentationSettings,
    edgenet,
    load_boundary_model,
    segment_image,
)
from subobject_vlm.segmentation.edgenet import _per_image_quantile, handcrafted_features

SETTINGS = SegmentationSettings(
    "default", max_tokens=64, seeds="threshold"
)  # the seeds the tolerances were measured with


def reference(function, *args):
    """``function(*args)`` on the pure-PyTorch reference path."""
    fast, edgenet.USE_FAST_PATH = edgenet.USE_FAST_PATH, False
    try:
        return function(*args)
    finally:
        edgenet.USE_FAST_PATH = fast


def as_batch(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0  # (1, 3, H, W)


def tiny_directsam(batch_size: int) -> BoundaryPredictor:
    torch.manual_seed(0)
    model = EdgeNetForBoundaryDetection(EdgeNetConfig(widths=(4, 4, 8, 8)))
    return BoundaryPredictor(model, resolution=64, keep_aspect=True, batch_size=batch_size)


# ------------------------------------------------------------------------------ fast CPU path == reference


@pytest.mark.parametrize("shape", [(128, 128), (37, 53), (10, 12)])  # (10, 12): too small to reflect
def test_fast_features_equal_the_torch_reference(astronaut, shape):
    image = np.ascontiguousarray(astronaut[: shape[0] * 4 : 4, : shape[1] * 4 : 4])
    with torch.inference_mode():
        fast = handcrafted_features(as_batch(image))
        slow = reference(handcrafted_features, as_batch(image))
    torch.testing.assert_close(fast, slow, atol=1e-4, rtol=0)


def test_fast_percentile_is_the_same_element_as_kthvalue():
    values = torch.rand(3, 1, 41, 57) ** 3
    assert torch.equal(_per_image_quantile(values, 0.99), reference(_per_image_quantile, values, 0.99))


def test_default_model_fast_path_gives_the_reference_maps(astronaut):
    image = np.ascontiguousarray(astronaut[::2, ::2])  # 256 x 256, run at 480 px
    model = load_boundary_model("default")
    [fast] = model.predict([image])
    [slow] = reference(model.predict, [image])
    np.testing.assert_allclose(fast, slow, atol=1e-4)
    fast_labels = segment_image(None, SETTINGS, boundary_probs=fast)
    slow_labels = segment_image(None, SETTINGS, boundary_probs=slow)
    assert (
        min(partition_agreement(fast_labels, slow_labels), partition_agreement(slow_labels, fast_labels))
        >= 0.995
    )


# ------------------------------------------------------------------------------------------------ batching


def mixed_images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    shapes = [(40, 60), (60, 40), (40, 60), (17, 23), (40, 60), (60, 40)]
    return [rng.integers(0, 256, (*shape, 3), np.uint8) for shape in shapes]


def test_batched_predict_equals_one_by_one_for_mixed_sizes():
    model = tiny_directsam(batch_size=4)
    images = mixed_images()
    together = model.predict(images)
    alone = [model.predict([image])[0] for image in images]
    for image, a, b in zip(images, together, alone):
        assert a.shape == image.shape[:2]
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_images_share_a_pass_only_with_images_of_their_input_size():
    model = tiny_directsam(batch_size=2)
    seen = []
    model.model.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs["pixel_values"].shape), with_kwargs=True
    )
    model.predict(mixed_images())
    # input sizes (longer side 64): 43x64 three times, 64x43 twice, 47x64 once -> passes of <= 2 images
    assert sorted(tuple(shape) for shape in seen) == sorted(
        [(2, 3, 43, 64), (1, 3, 43, 64), (2, 3, 64, 43), (1, 3, 47, 64)]
    )


# ----------------------------------------------------------------------------------------------- CUDA path

# Boundary probabilities against float32 on the CPU: the largest mean |difference| per image, and the smallest
# label-map agreement at 64 tokens. Measured on the CPU in the same dtypes (4 example photos): bfloat16 mean
# 4.9e-4..1.2e-3, agreement 0.992..0.999; float16 mean 7e-5..1.7e-4, agreement >= 0.9995; the bounds leave room
# for other kernels. float32 on CUDA runs TF32 convolutions.
HALF_TOLERANCE = {"float32": (1e-3, 0.995), "bfloat16": (5e-3, 0.98), "float16": (1e-3, 0.995)}


def assert_within_tolerance(images: list[np.ndarray], dtype: str, **options) -> None:
    """The default model with ``options`` (device, dtype, ...) against float32 on the CPU."""
    resolution = options.get("resolution", "auto")
    expected = BoundaryPredictor.from_pretrained(DEFAULT_WEIGHTS_DIR, resolution=resolution).predict(images)
    model = BoundaryPredictor.from_pretrained(DEFAULT_WEIGHTS_DIR, dtype=dtype, **options)
    max_mean_error, min_agreement = HALF_TOLERANCE[dtype]
    for reference_probs, probs in zip(expected, model.predict(images)):
        assert probs.shape == reference_probs.shape and probs.dtype == np.float32
        assert np.abs(probs - reference_probs).mean() <= max_mean_error
        a = segment_image(None, SETTINGS, boundary_probs=reference_probs)
        b = segment_image(None, SETTINGS, boundary_probs=probs)
        assert min(partition_agreement(a, b), partition_agreement(b, a)) >= min_agreement


@pytest.mark.filterwarnings("ignore:.*emulated:UserWarning")
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_on_cpu_stays_within_the_stated_tolerance(astronaut, dtype):
    assert_within_tolerance([astronaut], dtype, resolution=240)  # emulated half precision: a small input


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (CI and tests never require one)")
@pytest.mark.parametrize("dtype", list(HALF_TOLERANCE))
def test_cuda_batched_half_precision_gives_the_cpu_label_maps(dtype):
    images = [load_image(path) for path in sorted((REPO_ROOT / "examples" / "images").glob("*.jpg"))]
    images += [np.ascontiguousarray(image[::2, ::3]) for image in images]  # other sizes in the same call
    assert_within_tolerance(images, dtype, device="cuda", batch_size=8)
