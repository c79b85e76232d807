"""Odd and bad image inputs: every one is either handled correctly or rejected with a clear error."""

import numpy as np
import pytest
from PIL import Image

from subobject_vlm.image_utils import ImageLoadError, list_image_files, load_image, to_rgb_uint8


def save(image: Image.Image, path, **kwargs):
    image.save(path, **kwargs)
    return path


@pytest.mark.parametrize(
    "make",
    [
        lambda: Image.new("L", (7, 5), 128),
        lambda: Image.new("RGBA", (7, 5), (10, 20, 30, 255)),
        lambda: Image.new("LA", (7, 5), (10, 255)),
        lambda: Image.new("P", (7, 5), 3),
        lambda: Image.new("CMYK", (7, 5), (0, 255, 0, 0)),
        lambda: Image.new("I;16", (7, 5), 65535),
        lambda: Image.new("I", (7, 5), 30000),
        lambda: Image.new("1", (7, 5), 1),
    ],
)
def test_every_pil_mode_becomes_rgb_uint8(make):
    rgb = to_rgb_uint8(make())
    assert rgb.shape == (5, 7, 3) and rgb.dtype == np.uint8


def test_sixteen_bit_grayscale_is_scaled_not_clipped(tmp_path):
    array = np.full((4, 4), 32768, np.uint16)
    path = save(Image.fromarray(array), tmp_path / "g16.png")
    assert load_image(path)[0, 0, 0] == 128


def test_transparent_pixels_are_composited_on_white():
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)
    rgb = to_rgb_uint8(Image.fromarray(rgba))
    assert rgb[0, 0].tolist() == [255, 0, 0] and rgb[1, 1].tolist() == [255, 255, 255]


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (30, 10), (0, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    path = save(image, tmp_path / "rotated.jpg", exif=exif.tobytes())
    assert load_image(path).shape == (30, 10, 3)


@pytest.mark.parametrize(
    "content, message",
    [(b"", "empty"), (b"this is not an image", "not an image"), (None, "cannot decode")],
)
def test_unreadable_files_raise_an_error_naming_the_file(tmp_path, content, message):
    path = tmp_path / "bad.jpg"
    if content is None:  # a truncated JPEG
        save(Image.new("RGB", (64, 64), (200, 10, 10)), path, quality=95)
        path.write_bytes(path.read_bytes()[:200])
    else:
        path.write_bytes(content)
    with pytest.raises(ImageLoadError, match="bad.jpg") as info:
        load_image(path)
    assert message in str(info.value)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ImageLoadError, match="nope.png: no such file"):
        load_image(tmp_path / "nope.png")


def test_decompression_bombs_are_refused_before_decoding(tmp_path, monkeypatch):
    path = save(Image.new("RGB", (200, 200)), tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ImageLoadError, match="too large"):
        load_image(path)


@pytest.mark.parametrize("shape", [(1, 1), (1, 10000), (10000, 1, 3)])
def test_degenerate_sizes_are_valid_images(shape):
    assert to_rgb_uint8(np.zeros(shape, np.uint8)).shape[:2] == shape[:2]


def test_channel_first_arrays_and_tensors_are_accepted():
    torch = pytest.importorskip("torch")
    chw = np.random.default_rng(0).uniform(0, 1, (3, 8, 9)).astype(np.float32)
    from_numpy = to_rgb_uint8(chw)
    assert from_numpy.shape == (8, 9, 3)
    assert np.array_equal(to_rgb_uint8(torch.from_numpy(chw)), from_numpy)


@pytest.mark.parametrize("width", [1, 3, 4])
def test_a_tensor_is_channels_first_even_when_its_width_looks_like_channels(width):
    """Found by the property tests: a (3, H, 3) tensor was read as an (H, W, C) image of the wrong size."""
    torch = pytest.importorskip("torch")
    chw = torch.randint(0, 256, (3, 5, width), dtype=torch.uint8)
    rgb = to_rgb_uint8(chw)
    assert rgb.shape == (5, width, 3)
    assert np.array_equal(rgb, chw.permute(1, 2, 0).numpy())


@pytest.mark.parametrize(
    "array, message",
    [
        (np.zeros((5, 5, 2), np.uint8), "C in 1/3/4"),
        (np.zeros((2, 3, 4, 5), np.uint8), "C in 1/3/4"),
        (np.zeros((0, 4, 3), np.uint8), "empty"),
        (np.full((4, 4, 3), np.nan, np.float32), "NaN"),
        (np.full((4, 4, 3), 2.0, np.float32), r"\[0, 1\]"),
        (np.full((4, 4, 3), -5, np.int32), "uint8 or uint16"),
    ],
)
def test_malformed_arrays_are_rejected(array, message):
    with pytest.raises(ImageLoadError, match=message):
        to_rgb_uint8(array)


def test_unsupported_types_are_rejected():
    with pytest.raises(ImageLoadError, match="unsupported image type"):
        to_rgb_uint8({"not": "an image"})


def test_folders_contribute_image_files_and_named_files_are_always_kept(tmp_path):
    (tmp_path / "b.png").write_bytes(b"")
    (tmp_path / "a.JPG").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("x")
    other = tmp_path / "explicit.dat"
    other.write_text("x")
    assert [p.name for p in list_image_files([tmp_path, other])] == ["a.JPG", "b.png", "explicit.dat"]


def test_a_4_channel_array_is_refused_as_ambiguous_but_an_rgba_image_is_composited():
    rgba = np.zeros((2, 2, 4), np.uint8)
    for array in (rgba, np.moveaxis(rgba, -1, 0)):  # HWC and CHW
        with pytest.raises(ImageLoadError, match="4-channel array .* ambiguous"):
            to_rgb_uint8(array)
    assert to_rgb_uint8(Image.fromarray(rgba, "RGBA")).shape == (
        2,
        2,
        3,
    )  # the mode says what the 4th channel is
    assert to_rgb_uint8(rgba[..., :3]).shape == (2, 2, 3)
