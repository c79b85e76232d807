"""Devices and dtypes by name: one table, one-line errors before anything loads."""

import pytest
import torch

from subobject_vlm.cli import main
from subobject_vlm.devices import check_device, resolve_dtype, warn_slow_half_precision


def test_dtypes_resolve_by_name_or_object():
    assert resolve_dtype("bfloat16") is torch.bfloat16 and resolve_dtype(torch.float16) is torch.float16
    with pytest.raises(ValueError, match="dtype must be one of"):
        resolve_dtype("float64")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_a_device_that_is_not_here_is_one_clear_error(tmp_path, capsys):
    assert check_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="not available here"):
        check_device("cuda")
    with pytest.raises(ValueError, match="device must be"):
        check_device("gpu0")
    image = tmp_path / "a.png"
    from PIL import Image

    Image.new("RGB", (8, 8)).save(image)
    assert main(["segment", str(image), "--out", str(tmp_path / "out"), "--device", "cuda"]) == 2
    assert (
        capsys.readouterr().err.strip()
        == "subobject-vlm segment: error: device 'cuda' is not available here (no CUDA); use cpu"
    )


def test_half_precision_on_cpu_warns_that_it_is_slow():
    with pytest.warns(UserWarning, match="slower than float32"):
        warn_slow_half_precision(torch.device("cpu"), torch.bfloat16)
