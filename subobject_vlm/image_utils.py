"""Reading and normalising images: any file, PIL image, array or tensor -> ``(H, W, 3)`` uint8 RGB; and label
maps as lossless 16-bit PNGs (``encode_label_map`` / ``decode_label_map``).

One place decides how odd inputs are handled: EXIF orientation is applied, alpha is composited onto
white, palette / grayscale / CMYK / 16-bit images are converted, and anything unreadable raises
``ImageLoadError`` naming the file and the problem.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


class ImageLoadError(ValueError):
    """An input could not be turned into an RGB image; the message names the input and the reason."""


def _composite_on_white(rgba: np.ndarray) -> np.ndarray:
    """``(H, W, 4)`` uint8 -> ``(H, W, 3)`` uint8, alpha-blended onto a white background."""
    rgb, alpha = rgba[..., :3].astype(np.float32), rgba[..., 3:].astype(np.float32) / 255.0
    return np.round(rgb * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)


def _pil_to_rgb(image: Image.Image) -> np.ndarray:
    """Any PIL mode -> ``(H, W, 3)`` uint8, with EXIF orientation applied."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):  # 16-bit / 32-bit grayscale
        values = np.asarray(image, dtype=np.float64)
        scale = 65535.0 if image.mode.startswith("I;16") or values.max(initial=0) > 255 else 255.0
        if image.mode == "F" and values.max(initial=0) <= 1.0:
            scale = 1.0
        gray = np.clip(np.round(values / scale * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        return _composite_on_white(np.array(image.convert("RGBA")))
    return np.array(image.convert("RGB"))


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as ``(H, W, 3)`` uint8 RGB (EXIF-rotated).

    Raises:
        ImageLoadError: the file is missing, empty, truncated, not an image, or larger than Pillow's
            decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``).
    """
    path = Path(path)
    if not path.is_file():
        raise ImageLoadError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise ImageLoadError(f"{path}: file is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.load()
                return _pil_to_rgb(image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageLoadError(f"{path}: too large to decode safely ({error})") from None
    except UnidentifiedImageError:
        raise ImageLoadError(f"{path}: not an image file Pillow can read") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageLoadError(f"{path}: cannot decode image ({error})") from None


def to_rgb_uint8(image, name: str = "image") -> np.ndarray:
    """Normalise one image to a C-contiguous ``(H, W, 3)`` uint8 RGB array.

    Accepts a file path, a PIL image (any mode), or a numpy array / torch tensor / nested list shaped ``(H, W)``,
    ``(H, W, C)`` or ``(C, H, W)`` with ``C`` in 1, 3, 4; uint8, uint16, bool or float in [0, 1]. A 3-D tensor
    whose first dimension is 1, 3 or 4 is read as ``(C, H, W)`` (torchvision's layout); an array as
    ``(H, W, C)`` where its last dimension allows it (PIL's and scikit-image's layout), else as ``(C, H, W)``.
    """
    if isinstance(image, (str, os.PathLike)):
        return load_image(image)
    if isinstance(image, Image.Image):
        return _pil_to_rgb(image)
    channels_first = hasattr(image, "detach")  # torch.Tensor: (C, H, W) as torchvision's, whatever W is
    if channels_first:
        image = image.detach().cpu().numpy()
    elif isinstance(image, list):  # nested lists, as HF datasets return array columns
        image = np.asarray(image)
    if not isinstance(image, np.ndarray):
        raise ImageLoadError(f"{name}: unsupported image type {type(image).__name__}")
    array = image
    if (
        array.ndim == 3
        and array.shape[0] in (1, 3, 4)
        and (channels_first or array.shape[-1] not in (1, 3, 4))
    ):
        array = np.moveaxis(array, 0, -1)  # (C, H, W) -> (H, W, C)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in (1, 3, 4):
        raise ImageLoadError(
            f"{name}: expected (H, W), (H, W, C) or (C, H, W) with C in 1/3/4, got {image.shape}"
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ImageLoadError(f"{name}: image is empty (shape {image.shape})")
    if array.shape[-1] == 4:  # RGBA, CMYK and 4-band images all look alike as arrays
        raise ImageLoadError(
            f"{name}: a 4-channel array {image.shape} is ambiguous (RGBA? CMYK?); pass a PIL image with its mode "
            "(Image.fromarray(array, 'RGBA')) or the RGB channels (array[..., :3])"
        )
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    elif array.dtype == np.uint16:
        array = (array.astype(np.uint32) * 255 + 32767) // 65535
    elif np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ImageLoadError(f"{name}: image contains NaN or infinite values")
        if array.min() < 0 or array.max() > 1:
            raise ImageLoadError(
                f"{name}: float images must hold values in [0, 1], got [{array.min()}, {array.max()}]"
            )
        array = np.round(array * 255.0)
    elif array.dtype != np.uint8:
        if array.min() < 0 or array.max() > 255:
            raise ImageLoadError(
                f"{name}: integer images must be uint8 or uint16, got {array.dtype} values out of range"
            )
    array = array.astype(np.uint8, copy=False)
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=2)
    return np.ascontiguousarray(array)


MAX_PNG_LABELS = 65536  # a 16-bit PNG holds labels 0..65535


def encode_label_map(label_map: np.ndarray) -> bytes:
    """``(h, w)`` label map with labels ``0..65535`` -> lossless 16-bit grayscale PNG bytes."""
    import cv2

    if label_map.ndim != 2:
        raise ValueError(f"a label map is (h, w), got shape {label_map.shape}")
    if label_map.size and int(label_map.max()) >= MAX_PNG_LABELS:
        raise ValueError(
            f"{int(label_map.max()) + 1} regions do not fit a 16-bit PNG label map (at most {MAX_PNG_LABELS})"
        )
    ok, png = cv2.imencode(".png", label_map.astype(np.uint16), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:  # pragma: no cover - OpenCV refuses only invalid arrays
        raise ValueError("OpenCV could not encode the label map as PNG")
    return png.tobytes()


def decode_label_map(png: bytes) -> np.ndarray:
    """16-bit PNG bytes (from :func:`encode_label_map`) -> ``(h, w)`` int32 label map."""
    import cv2

    label_map = cv2.imdecode(np.frombuffer(png, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if label_map is None or label_map.ndim != 2:
        raise ValueError("not a single-channel PNG label map")
    return label_map.astype(np.int32)


def list_image_files(inputs: list[str | os.PathLike]) -> list[Path]:
    """Expand files and folders into a list of paths: a folder contributes its image files (by extension,
    non-recursive, sorted); a file named explicitly is always kept, so a bad one is reported, not skipped."""
    paths: list[Path] = []
    for item in inputs:
        item = Path(item)
        if item.is_dir():
            paths.extend(
                sorted(p for p in item.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
            )
        else:
            paths.append(item)
    return paths


__all__ = [
    "IMAGE_EXTENSIONS",
    "MAX_PNG_LABELS",
    "ImageLoadError",
    "decode_label_map",
    "encode_label_map",
    "list_image_files",
    "load_image",
    "to_rgb_uint8",
]
