"""Where a checkpoint's files come from: a hub snapshot brings everything a tokenizer loads (configs, safetensors,
tokenizer vocabularies) and never a pickle; pickled weights are refused with a command that converts them into a
checkpoint the tokenizer loads. The hub is a local stand-in here (``fake_hub``): tests never reach the network."""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from subobject_vlm.segmentation import checkpoints
from subobject_vlm.segmentation.registry import create_boundary_model, create_tokenizer
from subobject_vlm.tiny_mask_models import save_tiny_mask_model


class FakeHub:
    """Hub repositories as local folders: ``model_info`` lists their files, ``snapshot_download`` copies the
    files its patterns match into a cache (as huggingface_hub does), ``local_files_only`` reads that cache."""

    def __init__(self, root: Path) -> None:
        self.repos: dict[str, Path] = {}
        self.cache = root / "cache"
        self.downloads: list[str] = []

    def add(self, name: str, folder: Path) -> None:
        self.repos[name] = folder

    def model_info(self, name: str, timeout: float | None = None):
        import httpx
        from huggingface_hub.errors import RepositoryNotFoundError

        if name not in self.repos:
            request = httpx.Request("GET", f"https://huggingface.co/api/models/{name}")
            raise RepositoryNotFoundError(f"no {name}", response=httpx.Response(404, request=request))
        files = sorted(
            p.relative_to(self.repos[name]).as_posix() for p in self.repos[name].rglob("*") if p.is_file()
        )
        return SimpleNamespace(siblings=[SimpleNamespace(rfilename=file) for file in files])

    def snapshot_download(self, name, allow_patterns=None, local_files_only=False, local_dir=None, **_):
        from huggingface_hub.errors import LocalEntryNotFoundError

        target = Path(local_dir) if local_dir else self.cache / name.replace("/", "--")
        if local_files_only:
            if not target.is_dir():
                raise LocalEntryNotFoundError(f"{name} is not cached")
            return str(target)
        self.downloads.append(name)
        target.mkdir(parents=True, exist_ok=True)
        for path in self.repos[name].iterdir():
            if allow_patterns is None or any(fnmatch.fnmatch(path.name, p) for p in allow_patterns):
                shutil.copy(path, target / path.name)
        return str(target)


@pytest.fixture
def fake_hub(tmp_path, monkeypatch) -> FakeHub:
    import huggingface_hub

    hub = FakeHub(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", hub.snapshot_download)
    monkeypatch.setattr(
        huggingface_hub.HfApi, "model_info", lambda self, name, timeout=None: hub.model_info(name)
    )
    return hub


def _pickled(folder: Path, kind: str) -> Path:
    """A copy of tiny checkpoint ``folder`` whose weights are a pickle (``pytorch_model.bin``), as many
    checkpoints on the hub still are."""
    from safetensors.torch import load_file

    pickled = folder.parent / f"{folder.name}-pickled"
    pickled.mkdir()
    for path in folder.glob("*.json"):
        shutil.copy(path, pickled / path.name)
    torch.save(load_file(folder / "model.safetensors"), pickled / "pytorch_model.bin")
    return pickled


def _clip_vocabulary(folder: Path) -> None:
    """Swap ``folder``'s tokenizer for a CLIP one stored as ``vocab.json`` + ``merges.txt``, the files
    OneFormer's hub checkpoints hold (no ``tokenizer.json``)."""
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (folder / name).unlink()
    letters = "abcdefghijklmnopqrstuvwxyz"
    tokens = [*letters, *(c + "</w>" for c in letters), "pa", "pan", "panoptic</w>", "the</w>", "task</w>"]
    tokens += ["is</w>", "<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({token: i for i, token in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\np a\npa n\n")
    special = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}
    config = {"tokenizer_class": "CLIPTokenizer", "pad_token": "<|endoftext|>", **special}
    (folder / "tokenizer_config.json").write_text(json.dumps(config))


def test_a_hub_oneformer_checkpoint_brings_its_tokenizer_vocabulary(fake_hub, tmp_path):
    from transformers import AutoTokenizer

    folder = save_tiny_mask_model("oneformer", tmp_path / "oneformer")
    _clip_vocabulary(folder)
    (folder / "pytorch_model.bin").write_bytes(b"a pickle beside the safetensors: never fetched")
    fake_hub.add("shi-labs/tiny-oneformer", folder)
    tokenizer = create_tokenizer("oneformer:shi-labs/tiny-oneformer")
    snapshot = Path(checkpoints.resolve_checkpoint("shi-labs/tiny-oneformer"))
    assert sorted(p.name for p in snapshot.iterdir()) == sorted(
        p.name for p in folder.iterdir() if p.name != "pytorch_model.bin"
    )
    text = "the task is panoptic"
    assert (
        tokenizer.processor.tokenizer(text).input_ids == AutoTokenizer.from_pretrained(folder)(text).input_ids
    )
    [label_map] = tokenizer.label_maps([np.zeros((24, 40, 3), np.uint8)], max_tokens=8)
    assert label_map.shape == (24, 40) and label_map.max() < 8
    create_tokenizer("oneformer:hf-hub:shi-labs/tiny-oneformer")  # from the cache: no second download
    assert fake_hub.downloads == ["shi-labs/tiny-oneformer"]


def test_a_pickled_hub_repository_is_refused_before_downloading_with_a_command_that_converts_it(
    fake_hub, tmp_path, monkeypatch
):
    folder = _pickled(save_tiny_mask_model("mask2former", tmp_path / "mask2former"), "mask2former")
    fake_hub.add("facebook/tiny-mask2former", folder)
    with pytest.raises(ValueError, match=r"pickled weights only \(pytorch_model.bin\)") as refused:
        create_tokenizer("mask2former:facebook/tiny-mask2former")
    assert fake_hub.downloads == []
    command = re.search(r'python -c "(.*)"', str(refused.value)).group(1)
    assert "Mask2FormerForUniversalSegmentation" in command  # the class with the heads, not AutoModel's
    monkeypatch.chdir(tmp_path)
    exec(command, {})  # the command as the user would run it (the hub: the stand-in)
    tokenizer = create_tokenizer(f"mask2former:{tmp_path / 'tiny-mask2former'}")
    reference = create_tokenizer(f"mask2former:{tmp_path / 'mask2former'}")
    image = np.random.default_rng(0).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    np.testing.assert_array_equal(tokenizer.label_maps([image])[0], reference.label_maps([image])[0])


def test_a_hub_repository_without_weights_or_config_is_named(fake_hub, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "README.md").write_text("no weights")
    fake_hub.add("someone/empty", empty)
    with pytest.raises(ValueError, match="'someone/empty' holds no model weights"):
        create_tokenizer("sam:someone/empty")
    (empty / "model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="'someone/empty' has no config.json"):
        create_tokenizer("sam:someone/empty")
    with pytest.raises(ValueError, match="no model 'someone/missing' on the Hugging Face Hub"):
        create_tokenizer("sam:someone/missing")


def test_a_cached_snapshot_without_weights_offline_says_what_it_lacks(fake_hub, monkeypatch):
    (fake_hub.cache / "someone--partial").mkdir(parents=True)
    (fake_hub.cache / "someone--partial" / "config.json").write_text("{}")  # a config fetched alone
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match="'someone/partial' is in the local Hugging Face cache without its"):
        create_tokenizer("sam:someone/partial")


def test_a_pickled_local_folder_is_refused_with_a_command_that_converts_it(tmp_path):
    folder = _pickled(save_tiny_mask_model("sam", tmp_path / "sam"), "sam")
    with pytest.raises(ValueError, match=r"pickled weights \(pytorch_model.bin\)") as refused:
        create_tokenizer(f"sam:{folder}", points_per_side=2)
    command = re.search(r'python -c "(.*)"', str(refused.value)).group(1)
    assert "from transformers import SamModel" in command
    done = subprocess.run([sys.executable, "-c", command], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    tokenizer = create_tokenizer(f"sam:{folder}", points_per_side=2, pred_iou_thresh=0.0)
    reference = create_tokenizer(f"sam:{tmp_path / 'sam'}", points_per_side=2, pred_iou_thresh=0.0)
    image = np.random.default_rng(1).integers(0, 256, (30, 20, 3), dtype=np.uint8)
    np.testing.assert_array_equal(tokenizer.label_maps([image])[0], reference.label_maps([image])[0])


def test_a_pickled_boundary_model_is_refused_naming_the_class_that_keeps_its_head(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(ValueError, match="from transformers import AutoModelForSemanticSegmentation"):
        create_boundary_model(tmp_path)


def _truncate_weights(folder: Path) -> None:
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])


def _break_config_json(folder: Path) -> None:
    (folder / "config.json").write_text("{not json")


def _config_as_a_list(folder: Path) -> None:
    (folder / "config.json").write_text("[1, 2]")


def _drop_the_processor(folder: Path) -> None:
    for name in ("processor_config.json", "preprocessor_config.json"):
        (folder / name).unlink(missing_ok=True)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_truncate_weights, "cannot load {kind} checkpoint"),
        (_break_config_json, "cannot read config.json"),
        (_config_as_a_list, "config.json holds a list, not a config object"),
        (_drop_the_processor, "cannot load {kind} checkpoint"),
    ],
)
@pytest.mark.parametrize("kind", ["sam", "edgetam", "mask2former"])
def test_a_broken_mask_checkpoint_is_named_in_one_line(kind, damage, message, tmp_path, capsys):
    from subobject_vlm.cli import main

    folder = save_tiny_mask_model(kind, tmp_path / kind)
    damage(folder)
    with pytest.raises(ValueError, match=re.escape(message.format(kind=kind))):
        create_tokenizer(f"{kind}:{folder}")
    (tmp_path / "in").mkdir()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "in" / "a.png")
    capsys.readouterr()
    assert (
        main(["segment", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--model", f"{kind}:{folder}"])
        == 2
    )
    error = capsys.readouterr().err
    assert error.startswith("subobject-vlm segment: error:") and str(folder) in error
