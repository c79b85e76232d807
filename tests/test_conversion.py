"""Conversion of a llava-hf LlavaForConditionalGeneration checkpoint (built and saved here) to SubobjectLlava."""

import argparse
import os
import shutil

import numpy as np
import pytest
import torch
from safetensors import safe_open
from transformers import (
    AutoModelForImageTextToText,
    AutoProcessor,
    CLIPImageProcessor,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
)

from subobject_vlm.commands import convert as convert_command
from subobject_vlm.conversion import convert_checkpoint
from subobject_vlm.modeling_subobject_llava import SubobjectLlavaForConditionalGeneration
from subobject_vlm.processing_subobject_llava import DEFAULT_CHAT_TEMPLATE, SubobjectLlavaProcessor
from subobject_vlm.tiny import tiny_text_config, tiny_tokenizer, tiny_vision_config

MEAN, STD = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]


@pytest.fixture(scope="module")
def llava_dir(tmp_path_factory):
    """A tiny random llava-hf checkpoint in the hub format (safetensors + LlavaProcessor)."""
    tokenizer = tiny_tokenizer()
    config = LlavaConfig(
        vision_config=tiny_vision_config(),
        text_config=tiny_text_config(len(tokenizer), eos_token_id=tokenizer.eos_token_id),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        pad_token_id=tokenizer.pad_token_id,  # at the top level, as llava-hf saves it
    )
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("llava-hf")
    LlavaForConditionalGeneration(config).save_pretrained(path)
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}, image_mean=MEAN, image_std=STD
    )
    LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=8,
        vision_feature_select_strategy="default",
        chat_template=DEFAULT_CHAT_TEMPLATE,
    ).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def converted(llava_dir, tmp_path_factory):
    return convert_checkpoint(
        llava_dir, tmp_path_factory.mktemp("subobject"), max_tokens=8, boundary_model="gradient"
    )


def test_writes_a_safetensors_checkpoint_loadable_with_the_auto_classes(converted):
    assert (converted / "model.safetensors").is_file() and not list(converted.glob("*.bin"))
    model = AutoModelForImageTextToText.from_pretrained(converted)
    assert isinstance(model, SubobjectLlavaForConditionalGeneration)
    assert isinstance(AutoProcessor.from_pretrained(converted), SubobjectLlavaProcessor)
    assert model.config.max_tokens_per_image == 8


def test_vision_tower_and_language_model_weights_are_copied_exactly(llava_dir, converted):
    source = LlavaForConditionalGeneration.from_pretrained(llava_dir).state_dict()
    with safe_open(converted / "model.safetensors", "pt") as saved:
        keys = set(saved.keys())
        copied = [k for k in source if not k.startswith("model.multi_modal_projector.")]
        for key in copied:
            assert torch.equal(saved.get_tensor(key), source[key]), key
    new = {k for k in keys if k not in source}
    assert new == {
        "model.multi_modal_projector.projector.0.weight",
        "model.multi_modal_projector.projector.0.bias",
        "model.multi_modal_projector.projector.2.weight",
        "model.multi_modal_projector.projector.2.bias",
        "model.image_boundary_embeddings.weight",
    }


def test_a_region_token_starts_as_llavas_projection_of_the_regions_mean_feature(llava_dir, converted):
    source = LlavaForConditionalGeneration.from_pretrained(llava_dir).eval()
    model = AutoModelForImageTextToText.from_pretrained(converted).eval()
    pixels = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    whole_image = torch.zeros(1, 32, 32, dtype=torch.long)  # one region: the mean of all patch features
    with torch.no_grad():
        token = model.get_image_features(pixels, whole_image).image_tokens  # (1, D)
        hidden = source.model.vision_tower(pixels, output_hidden_states=True).hidden_states[-2][:, 1:]
        expected = source.model.multi_modal_projector(hidden.mean(1))
    torch.testing.assert_close(token, expected, atol=1e-5, rtol=1e-4)


def test_random_projector_init_when_reuse_is_off(llava_dir, tmp_path):
    out = convert_checkpoint(llava_dir, tmp_path / "fresh", max_tokens=8, reuse_projector=False)
    with safe_open(out / "model.safetensors", "pt") as saved:
        first = saved.get_tensor("model.multi_modal_projector.projector.0.weight")
    assert first[:, 32:].abs().sum() > 0  # box and shape columns are not zero


def test_image_processor_takes_the_source_clip_size_mean_and_std(converted):
    image_processor = AutoProcessor.from_pretrained(converted).image_processor
    assert (image_processor.size["height"], image_processor.size["width"]) == (32, 32)
    assert list(image_processor.image_mean) == MEAN and list(image_processor.image_std) == STD
    assert (image_processor.max_tokens, image_processor.boundary_model) == (8, "gradient")


def test_converted_model_generates_from_processor_inputs(converted):
    processor = AutoProcessor.from_pretrained(converted)
    model = AutoModelForImageTextToText.from_pretrained(converted).eval()
    image = np.zeros((48, 48, 3), np.uint8)
    image[:, 24:] = 200
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is in the image?"}]}
    ]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    inputs = processor(images=image, text=prompt, return_tensors="pt")
    out = model.generate(**inputs, max_new_tokens=2, do_sample=False)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 2


def test_cli_convert_reports_a_missing_source_and_exits_2(tmp_path, capsys):
    from subobject_vlm.cli import main

    assert main(["convert", str(tmp_path / "nowhere"), str(tmp_path / "out")]) == 2
    assert "error:" in capsys.readouterr().err


def test_cli_convert_writes_the_checkpoint(llava_dir, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    convert_command.add_arguments(parser)
    args = parser.parse_args(
        [str(llava_dir), str(tmp_path / "out"), "--max-tokens", "4", "--dtype", "bfloat16"]
    )
    assert convert_command.run(args) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "out")
    model = AutoModelForImageTextToText.from_pretrained(tmp_path / "out")
    assert model.dtype == torch.bfloat16 and os.path.exists(tmp_path / "out" / "processor_config.json")


def test_a_pickled_source_is_refused_naming_the_class_that_keeps_its_language_head(
    llava_dir, tmp_path, capsys
):
    from subobject_vlm.cli import main

    pickled = tmp_path / "pickled"
    pickled.mkdir()
    shutil.copy(llava_dir / "config.json", pickled / "config.json")
    (pickled / "pytorch_model.bin").write_bytes(b"pickle")
    assert main(["convert", str(pickled), str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert "pickled weights (pytorch_model.bin)" in error and "import AutoModelForImageTextToText" in error
    assert not (tmp_path / "out").exists()


def test_a_checkpoint_that_is_not_llava_is_refused_before_any_weight_loads(tmp_path, capsys):
    from transformers import SegformerConfig, SegformerForSemanticSegmentation

    from subobject_vlm.cli import main

    config = SegformerConfig(
        num_encoder_blocks=1,
        depths=[1],
        sr_ratios=[1],
        hidden_sizes=[8],
        patch_sizes=[3],
        strides=[2],
        num_attention_heads=[1],
        mlp_ratios=[1],
        decoder_hidden_size=8,
        num_labels=1,
    )
    SegformerForSemanticSegmentation(config).save_pretrained(tmp_path / "segformer")
    capsys.readouterr()  # the save's own progress bar
    assert main(["convert", str(tmp_path / "segformer"), str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert (
        "is a 'segformer' checkpoint: no VLM family takes model_type 'segformer'; supported: llava," in error
    )
    assert error.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_the_source_pad_token_id_is_kept(llava_dir, converted):
    from transformers import AutoConfig

    source = LlavaConfig.from_pretrained(llava_dir)
    assert source.pad_token_id is not None and source.text_config.pad_token_id is None  # llava-hf's layout
    assert AutoConfig.from_pretrained(converted).pad_token_id == source.pad_token_id


def test_parameter_estimate_matches_the_model_its_config_builds():
    from transformers import MistralConfig

    from subobject_vlm.conversion import estimate_parameters

    tokenizer = tiny_tokenizer()
    for config in (
        LlavaConfig(text_config={"model_type": "llama", "vocab_size": 32064}),  # llava-1.5-7b: 7,063,427,072
        LlavaConfig(text_config=MistralConfig().to_dict()),
        LlavaConfig(vision_config=tiny_vision_config(), text_config=tiny_text_config(len(tokenizer))),
    ):
        with torch.device("meta"):  # sizes only, no memory
            real = sum(p.numel() for p in LlavaForConditionalGeneration(config).parameters())
        assert abs(estimate_parameters(config) - real) <= 0.01 * real


def test_a_source_larger_than_the_available_memory_is_refused_before_any_weight_loads(
    llava_dir, tmp_path, capsys, monkeypatch
):
    from subobject_vlm import conversion
    from subobject_vlm.cli import main

    stored = sum(f.stat().st_size for f in llava_dir.glob("*.safetensors"))  # float32 weights
    monkeypatch.setattr(conversion, "available_memory_bytes", lambda: stored // 2 + 4096)

    def no_weights(*args, **kwargs):
        raise AssertionError("weights were read before the memory check")

    with monkeypatch.context() as patch:
        patch.setattr(LlavaForConditionalGeneration, "from_pretrained", no_weights)
        assert main(["convert", str(llava_dir), str(tmp_path / "out")]) == 2
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and "needs about" in error and "GiB is available" in error
        assert not (tmp_path / "out").exists()
    # half of the float32 bytes: fits in bfloat16, and --no-memory-check converts whatever the estimate
    assert main(["convert", str(llava_dir), str(tmp_path / "bf16"), "--dtype", "bfloat16"]) == 0
    assert main(["convert", str(llava_dir), str(tmp_path / "forced"), "--no-memory-check"]) == 0


def test_a_merged_lora_checkpoint_is_saved_in_the_dtype_the_training_config_names(converted, tmp_path):
    import yaml
    from conftest import REPO_ROOT

    from subobject_vlm.training.train_vlm import train_vlm

    config = yaml.safe_load((REPO_ROOT / "configs" / "vlm_tiny_smoke.yaml").read_text())
    config["output_dir"] = str(tmp_path / "run")
    config["model"] = {
        "pretrained": str(converted),
        "dtype": "bfloat16",
    }  # a float32 checkpoint, trained in bf16
    config["image_processor"] = {}  # the converted checkpoint's own
    config["data"]["train"] = {"synthetic": {"num_images": 4, "size": 32, "seed": 0}}
    config["training"].update(max_steps=1, save_steps=1, per_device_train_batch_size=2, disable_tqdm=True)
    merged = train_vlm(config) / "merged"
    with safe_open(merged / "model.safetensors", "pt") as saved:
        dtypes = {saved.get_tensor(key).dtype for key in saved.keys()}
    assert dtypes == {torch.bfloat16}
    assert AutoModelForImageTextToText.from_pretrained(merged).dtype == torch.bfloat16
