"""Every VLM family converts: a tiny random source of each family, built from its own config class and saved in
the hub's format, becomes a SubobjectLlava that keeps its towers weight for weight, loads with the Auto
classes, generates, runs in ``pipeline("image-text-to-text")``, trains with LoRA and with ``subobject-vlm train``,
round-trips through save/load, is taken by ``precompute``, marks its assistant replies for ``assistant_only_loss``
and keeps its family's image convention (LLaVA-1.5's pad-to-square)."""

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from transformers import AutoModelForImageTextToText, AutoProcessor

from subobject_vlm.conversion import convert_checkpoint, split_source_state
from subobject_vlm.families import family_of, supported_model_types
from subobject_vlm.modeling_subobject_llava import SubobjectLlavaForConditionalGeneration
from subobject_vlm.tiny import TINY_SOURCE_MEAN, TINY_SOURCE_STD, save_tiny_source_vlm

MODEL_TYPES = supported_model_types()  # llava's conversion in detail: test_conversion


def convert_tiny_source(model_type: str, tmp_path_factory) -> tuple[str, Path, Path]:
    """(model_type, source folder, converted folder) for a tiny source of ``model_type``, converted."""
    torch.manual_seed(0)
    source = tmp_path_factory.mktemp(model_type)
    save_tiny_source_vlm(model_type, source)
    converted = convert_checkpoint(
        source, tmp_path_factory.mktemp(f"{model_type}-subobject"), max_tokens=6, boundary_model="patch"
    )
    return model_type, source, converted


@pytest.fixture(scope="module", params=MODEL_TYPES)
def pair(request, tmp_path_factory):
    """(model_type, source folder, converted folder) for one tiny source of each family, built once."""
    return convert_tiny_source(request.param, tmp_path_factory)


def image(seed: int = 0) -> np.ndarray:
    """A 48x48 RGB image of a few flat rectangles."""
    rng = np.random.default_rng(seed)
    picture = np.zeros((48, 48, 3), np.uint8)
    for _ in range(4):
        y, x = rng.integers(0, 40, 2)
        picture[y : y + 16, x : x + 20] = rng.integers(0, 255, 3)
    return picture


def prompt_inputs(processor, answer: str | None = None, images: int = 1):
    """Processor inputs for one chat turn about ``images`` images (with an assistant ``answer`` if given)."""
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "what is red"}]}]
    if answer is not None:
        messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    text = processor.apply_chat_template(messages, add_generation_prompt=answer is None)
    pictures = [image(i) for i in range(images)]
    return processor(images=pictures, text=[text] * images, return_tensors="pt", padding=True)


def test_every_vision_and_language_tensor_equals_the_sources(pair):
    model_type, source_dir, converted = pair
    family = family_of(model_type)
    source_state = AutoModelForImageTextToText.from_pretrained(source_dir).state_dict()
    state, projector = split_source_state(family, source_state)
    with safe_open(converted / "model.safetensors", "pt") as saved:
        keys = set(saved.keys())
        for key, tensor in state.items():
            if key not in keys:  # a tied head is saved once, as the word embeddings
                assert key == "lm_head.weight" and torch.equal(
                    tensor, source_state[f"{family.text_prefix}embed_tokens.weight"]
                )
                continue
            assert torch.equal(saved.get_tensor(key), tensor), key
    assert len(state) + len(projector) + sum(k.startswith(family.unused) for k in source_state) == len(
        source_state
    )
    new = {k.split(".")[1] for k in keys - set(state)}
    assert new == {"multi_modal_projector", "image_boundary_embeddings"}


def test_the_checkpoint_loads_with_the_auto_classes_and_generates_greedy_sampled_and_beamed(pair):
    _, _, converted = pair
    model = AutoModelForImageTextToText.from_pretrained(converted).eval()
    processor = AutoProcessor.from_pretrained(converted)
    assert isinstance(model, SubobjectLlavaForConditionalGeneration)
    inputs = prompt_inputs(processor)
    length = inputs["input_ids"].shape[1]
    for settings in (
        {"do_sample": False},
        {"do_sample": True, "top_k": 5},
        {"num_beams": 2, "do_sample": False},
    ):
        assert model.generate(**inputs, max_new_tokens=2, min_new_tokens=2, **settings).shape == (
            1,
            length + 2,
        )


def test_a_save_and_load_round_trip_gives_identical_greedy_generations(pair, tmp_path):
    _, _, converted = pair
    model = AutoModelForImageTextToText.from_pretrained(converted).eval()
    inputs = prompt_inputs(AutoProcessor.from_pretrained(converted), images=2)
    model.save_pretrained(tmp_path)
    again = AutoModelForImageTextToText.from_pretrained(tmp_path).eval()
    settings = {"max_new_tokens": 4, "do_sample": False}
    assert torch.equal(model.generate(**inputs, **settings), again.generate(**inputs, **settings))


def test_one_lora_step_lowers_the_loss_and_merging_keeps_the_adapters_output(pair):
    from peft import LoraConfig, get_peft_model

    _, _, converted = pair
    torch.manual_seed(0)
    model = AutoModelForImageTextToText.from_pretrained(converted)
    inputs = prompt_inputs(AutoProcessor.from_pretrained(converted), answer="red square", images=2)
    lora = LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], modules_to_save=["multi_modal_projector"]
    )
    model = get_peft_model(model, lora).train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(2):
        loss = model(**inputs, labels=inputs["input_ids"]).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert np.isfinite(losses).all() and losses[1] < losses[0]
    model.eval()
    with torch.no_grad():
        adapted = model(**inputs).logits
        merged = model.merge_and_unload()(**inputs).logits
    torch.testing.assert_close(merged, adapted, atol=1e-4, rtol=1e-4)


def _source_projection(model_type: str, source, mean: torch.Tensor) -> torch.Tensor:
    """The source's own projection of a (1, C) feature, as it projects a patch (or a block of equal patches)."""
    inner = source.model
    if model_type in ("idefics3", "smolvlm"):
        block = mean.repeat(4, 1)[None]  # (1, s*s patches, C): one pixel-shuffled token
        return inner.connector(block)[0]
    if model_type in ("qwen2_vl", "qwen2_5_vl"):
        return inner.visual.merger.mlp(mean.repeat(1, 4))  # 2 x 2 patches, already ln_q-normed
    return inner.multi_modal_projector(mean)


@pytest.mark.parametrize("pair", [t for t in MODEL_TYPES if family_of(t).projector_layers], indirect=True)
def test_a_region_token_starts_as_the_sources_projection_of_the_regions_mean_feature(pair):
    """(Gemma 3's projector is not reused: see its spec.)"""
    model_type, source_dir, converted = pair
    source = AutoModelForImageTextToText.from_pretrained(source_dir).eval()
    model = AutoModelForImageTextToText.from_pretrained(converted).eval()
    side = AutoProcessor.from_pretrained(converted).image_processor.size["height"]
    pixels = torch.randn(1, 3, side, side, generator=torch.Generator().manual_seed(0))
    whole_image = torch.zeros(1, side, side, dtype=torch.long)  # one region: the mean of all patch features
    with torch.no_grad():
        out = model.get_image_features(pixels, whole_image)
        mean = out.last_hidden_state.mean((2, 3))  # (1, C)
        expected = _source_projection(model_type, source, mean)
    torch.testing.assert_close(out.image_tokens, expected, atol=1e-5, rtol=1e-4)


def test_the_patch_grid_is_the_sources_own_image_features_before_projection(pair):
    """The feature map the regions are pooled from is what the source projects, patch for patch."""
    model_type, source_dir, converted = pair
    source = AutoModelForImageTextToText.from_pretrained(source_dir).eval()
    model = AutoModelForImageTextToText.from_pretrained(converted).eval()
    side = AutoProcessor.from_pretrained(converted).image_processor.size["height"]
    pixels = torch.randn(2, 3, side, side, generator=torch.Generator().manual_seed(1))
    labels = torch.zeros(2, side, side, dtype=torch.long)
    with torch.no_grad():
        grid = model.get_image_features(pixels, labels).last_hidden_state  # (B, C, h, w)
        tokens = grid.flatten(2).transpose(1, 2)  # (B, h*w, C) row-major
        if model_type in ("qwen2_vl", "qwen2_5_vl"):
            # the source's merged tokens = the merger MLP over each 2 x 2 block of our grid, block rows first
            b, c, h, w = grid.shape
            blocks = grid.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 3, 5, 1).reshape(-1, 4 * c)
            ours = source.model.visual.merger.mlp(blocks)
            theirs = source.model.visual(*_qwen_patches(source, pixels)).pooler_output
        elif model_type in ("idefics3", "smolvlm"):
            ours = source.model.connector(tokens)
            theirs = source.model.connector(source.model.vision_model(pixels).last_hidden_state)
        elif model_type == "gemma3":
            ours = source.model.multi_modal_projector(tokens)
            theirs = source.model.multi_modal_projector(source.model.vision_tower(pixels).last_hidden_state)
        elif model_type == "paligemma":
            ours = source.model.multi_modal_projector(tokens)
            theirs = source.model.get_image_features(pixels).pooler_output
        else:  # llava_next / llava_onevision: hidden state vision_feature_layer, CLS dropped where present
            ours = source.model.multi_modal_projector(tokens)
            hidden = source.model.vision_tower(pixels, output_hidden_states=True).hidden_states
            hidden = hidden[source.config.vision_feature_layer]
            hidden = hidden[:, 1:] if source.config.vision_feature_select_strategy == "default" else hidden
            theirs = source.model.multi_modal_projector(hidden)
    torch.testing.assert_close(ours.reshape(theirs.shape), theirs, atol=1e-5, rtol=1e-4)


def _qwen_patches(source, pixels: torch.Tensor):
    """Qwen2-VL's own flat patches and grid for (B, 3, H, W) pixels, through its image processor's patchify."""
    from transformers import Qwen2VLImageProcessor

    vision = source.config.vision_config
    processor = Qwen2VLImageProcessor(patch_size=vision.patch_size, merge_size=vision.spatial_merge_size)
    flat, grid_h, grid_w = processor.patchify(pixels, vision.patch_size, vision.spatial_merge_size, 2)
    thw = torch.tensor([[1, grid_h, grid_w]] * pixels.shape[0])
    return flat.reshape(-1, flat.shape[-1]), thw


def test_qwen2_vl_text_reads_1d_positions_as_m_rope_with_equal_sections(tmp_path):
    torch.manual_seed(0)
    save_tiny_source_vlm("qwen2_vl", tmp_path / "source")
    out = convert_checkpoint(tmp_path / "source", tmp_path / "out", max_tokens=4, boundary_model="patch")
    language_model = AutoModelForImageTextToText.from_pretrained(out).model.language_model.eval()
    embeds = torch.randn(1, 7, 32)
    positions = torch.arange(7)[None]
    with torch.no_grad():
        flat = language_model(inputs_embeds=embeds, position_ids=positions).last_hidden_state
        sections = language_model(
            inputs_embeds=embeds, position_ids=positions.expand(3, 1, 7)
        ).last_hidden_state
        default = language_model(inputs_embeds=embeds).last_hidden_state
    torch.testing.assert_close(flat, sections)
    torch.testing.assert_close(flat, default)


# refusals and real configs

REAL_CONFIGS = sorted((Path(__file__).parent / "data" / "vlm_configs").glob("*.json"))


def real_config(path: Path, tmp_path: Path):
    """The hub config copied in ``tests/data/vlm_configs``, loaded as the hub's ``config.json`` would be."""
    from transformers import AutoConfig

    (tmp_path / "config.json").write_text(path.read_text())
    return AutoConfig.from_pretrained(tmp_path)


@pytest.mark.parametrize("path", REAL_CONFIGS, ids=lambda p: p.stem)
def test_a_real_hub_config_maps_every_tensor_on_the_meta_device(path, tmp_path):
    from subobject_vlm.conversion import check_mapped_state, projector_fits, subobject_config

    config = real_config(path, tmp_path)
    family = family_of(config.model_type)
    with torch.device("meta"):  # shapes only: billions of parameters, no memory
        source = AutoModelForImageTextToText.from_config(config)
    state, projector = split_source_state(family, source.state_dict())
    converted_config = subobject_config(config, projector, image_token_id=7)
    with torch.device("meta"):
        model = SubobjectLlavaForConditionalGeneration(converted_config)
    check_mapped_state(family, state, model.state_dict(), path.name)  # none missing, unexpected or misshaped
    layers = [(projector[f"{n}.weight"], projector.get(f"{n}.bias")) for n in family.projector_layers]
    assert projector_fits(model.model.multi_modal_projector, layers) == bool(family.projector_layers)


@pytest.mark.parametrize("path", REAL_CONFIGS, ids=lambda p: p.stem)
def test_the_memory_check_refuses_a_hub_source_of_any_family_too_large_for_memory(
    path, tmp_path, monkeypatch
):
    from subobject_vlm import conversion

    config = real_config(path, tmp_path)
    monkeypatch.setattr(conversion, "available_memory_bytes", lambda: 2**28)  # 0.25 GiB
    with pytest.raises(
        ValueError, match=r"needs about .* GiB of memory for about \d\.\d\dB parameters"
    ) as error:
        conversion.check_memory_for_conversion(f"owner/{path.stem}", config, "bfloat16")
    assert "\n" not in str(error.value)


def test_an_unsupported_model_type_is_refused_in_one_line_naming_the_supported_ones():
    with pytest.raises(ValueError) as error:
        family_of("mllama")
    message = str(error.value)
    assert "\n" not in message and "'mllama'" in message
    assert all(
        t in message for t in ("llava_next", "llava_onevision", "smolvlm", "paligemma", "gemma3", "qwen2_vl")
    )


@pytest.mark.parametrize("damage", ["missing", "misshaped"])
def test_a_source_missing_or_misshaping_one_of_its_own_tensors_is_refused_naming_it(damage, tmp_path):
    from safetensors.torch import load_file, save_file

    save_tiny_source_vlm("paligemma", tmp_path / "source")
    weights = load_file(tmp_path / "source" / "model.safetensors")
    key = "vision_tower.encoder.layers.0.mlp.fc1.weight"  # as PaliGemma saves it
    if damage == "missing":
        del weights[key]
    else:
        weights[key] = torch.zeros(3, 3)
    save_file(weights, tmp_path / "source" / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"does not hold its own paligemma model's weights") as error:
        convert_checkpoint(tmp_path / "source", tmp_path / "out", boundary_model="patch")
    named = f"model.{key}" + ("'" if damage == "missing" else " (3, 3) != (64, 32)")
    assert named in str(error.value) and "\n" not in str(error.value)
    assert not (tmp_path / "out").exists()


# the family's image convention: LLaVA-1.5 pads to a square


def two_colour_strip() -> np.ndarray:
    """A 16 x 32 (h x w) image: red left half, blue right half."""
    strip = np.zeros((16, 32, 3), np.uint8)
    strip[:, :16] = (220, 20, 20)
    strip[:, 16:] = (20, 20, 220)
    return strip


@pytest.mark.parametrize("pair", ["llava"], indirect=True)
def test_a_converted_llava_processor_pads_to_a_square_exactly_as_llava_image_processor_does(pair):
    from transformers import LlavaImageProcessor

    _, _, converted = pair
    image_processor = AutoProcessor.from_pretrained(converted).image_processor
    strip = two_colour_strip()
    ours = image_processor(strip, return_tensors="pt")["pixel_values"]
    llava = LlavaImageProcessor(
        do_pad=True,
        size={"shortest_edge": 32},
        crop_size={"height": 32, "width": 32},
        image_mean=TINY_SOURCE_MEAN,
        image_std=TINY_SOURCE_STD,
    )(strip, return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(ours, llava, atol=0, rtol=0)


@pytest.mark.parametrize("pair", ["llava"], indirect=True)
def test_a_padded_images_label_map_covers_the_square_with_the_content_where_the_pixels_put_it(pair):
    _, _, converted = pair
    image_processor = AutoProcessor.from_pretrained(converted).image_processor
    [label_map] = image_processor(two_colour_strip(), boundary_model="gradient", max_tokens=8)["label_maps"]
    assert label_map.shape == (32, 32)  # the square's extent, at the label size
    assert set(np.unique(label_map)) == set(range(label_map.max() + 1))  # every pixel labelled
    # the padding: 8 rows above and below the content; both read 2 pixels from where they meet (watershed seams)
    band = np.concatenate([label_map[:6], label_map[26:]])
    left, right = label_map[10:22, 2:14], label_map[10:22, 18:30]
    assert len(np.unique(left)) == len(np.unique(right)) == 1 and left[0, 0] != right[0, 0]
    assert not set(np.unique(band)) & {left[0, 0], right[0, 0]}  # the mean-colour band is not the content


@pytest.mark.parametrize("pair", ["llava", "llava_onevision"], indirect=True)
def test_padding_to_a_square_is_saved_with_the_processor_and_only_for_llava_1_5(pair):
    model_type, _, converted = pair
    image_processor = AutoProcessor.from_pretrained(converted).image_processor
    settings, _ = image_processor.segmentation_settings()
    if model_type == "llava":
        assert image_processor.do_pad and settings.pad_color == tuple(int(255 * m) for m in TINY_SOURCE_MEAN)
    else:
        assert not image_processor.do_pad and settings.pad_color is None


def test_padding_is_part_of_the_segmentation_cache_key():
    from subobject_vlm.image_processing_subobject import SubobjectImageProcessor

    processor = SubobjectImageProcessor(
        boundary_model="gradient", max_tokens=8, do_pad=True, label_size={"height": 32, "width": 32}
    )
    strip = two_colour_strip()
    [padded] = processor.segment(strip)
    [squashed] = processor.segment(strip, do_pad=False)  # the same image, cached padded: not reused
    [fresh] = SubobjectImageProcessor(
        boundary_model="gradient", max_tokens=8, label_size=processor.label_size
    ).segment(strip)
    np.testing.assert_array_equal(squashed, fresh)
    assert not np.array_equal(padded, squashed)


@pytest.mark.parametrize("color", [(1, 2), (0, 0, 256), "red", (0.5, 0, 0)])
def test_a_pad_colour_that_is_not_three_bytes_is_refused_in_one_line(color):
    from subobject_vlm.image_processing_subobject import SubobjectImageProcessor

    with pytest.raises(ValueError, match=r"pad_color must be None or three integers in \[0, 255\]") as error:
        SubobjectImageProcessor(do_pad=True, pad_color=color)
    assert "\n" not in str(error.value)


# assistant-only loss, pipeline, precompute and train on every family

CHAT = [
    {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "what is red"}]},
    {"role": "assistant", "content": [{"type": "text", "text": "red square"}]},
]


def test_the_chat_template_marks_exactly_the_assistant_reply_and_its_end_of_turn(pair):
    from PIL import Image

    _, _, converted = pair
    processor = AutoProcessor.from_pretrained(converted)
    picture = Image.fromarray(image())
    chat = [{**CHAT[0], "content": [{"type": "image", "image": picture}, CHAT[0]["content"][1]]}, CHAT[1]]
    settings = {"tokenize": True, "return_dict": True}
    whole = processor.apply_chat_template(chat, return_assistant_tokens_mask=True, **settings)
    prompt = processor.apply_chat_template(chat[:1], add_generation_prompt=True, **settings)
    ids, mask = whole["input_ids"][0], whole["assistant_masks"][0]
    length = len(prompt["input_ids"][0])
    assert ids[:length] == prompt["input_ids"][0]  # the prompt up to the generation prompt: not learned
    assert not any(mask[:length]) and all(mask[length:]) and len(ids) > length + 2
    assert processor.decode(ids[length:]).startswith("red square")  # the reply, then its end-of-turn token(s)


def test_a_converted_checkpoint_runs_in_the_image_text_to_text_pipeline(pair):
    from PIL import Image
    from transformers import pipeline

    _, _, converted = pair
    generator = pipeline("image-text-to-text", model=str(converted))
    chat = [
        {
            "role": "user",
            "content": [{"type": "image", "image": Image.fromarray(image())}, CHAT[0]["content"][1]],
        }
    ]
    [out] = generator(
        text=chat, generate_kwargs={"max_new_tokens": 2, "min_new_tokens": 2, "do_sample": False}
    )
    assert out["generated_text"][-1]["role"] == "assistant"
    assert isinstance(generator.model, SubobjectLlavaForConditionalGeneration)


def test_precompute_takes_a_converted_checkpoints_processor_and_makes_its_label_maps(pair, tmp_path):
    from PIL import Image

    from subobject_vlm.commands import main
    from subobject_vlm.data.precompute import decode_label_map, load_precomputed

    _, _, converted = pair
    (tmp_path / "images").mkdir()
    pictures = {"a.png": two_colour_strip(), "b.png": image(3)}
    for name, picture in pictures.items():
        Image.fromarray(picture).save(tmp_path / "images" / name)
    out = tmp_path / "tokens"
    command = ["precompute", str(tmp_path / "images"), "--out", str(out), "--processor", str(converted)]
    assert main([*command, "--model", "gradient"]) == 0  # gradients: the map depends on the padded pixels
    image_processor = AutoProcessor.from_pretrained(converted).image_processor
    rows = {row["key"]: row for row in load_precomputed(out)}
    for name, picture in pictures.items():
        [expected] = image_processor(picture, boundary_model="gradient")["label_maps"]
        np.testing.assert_array_equal(decode_label_map(rows[name]["label_map"]), expected)


def test_vlm_training_runs_two_steps_on_a_converted_checkpoint_with_its_familys_image_token(pair, tmp_path):
    import json

    import yaml
    from conftest import REPO_ROOT

    from subobject_vlm.training.train_vlm import train_vlm

    _, _, converted = pair
    config = yaml.safe_load((REPO_ROOT / "configs" / "vlm_tiny_smoke.yaml").read_text())
    config["output_dir"] = str(tmp_path / "run")
    config["model"] = {"pretrained": str(converted)}
    config["image_processor"] = {}  # the converted checkpoint's own
    config["data"]["train"] = {"synthetic": {"num_images": 4, "size": 32, "seed": 0}}
    config["training"].update(
        max_steps=2, save_steps=2, logging_steps=1, per_device_train_batch_size=2, disable_tqdm=True
    )
    run = train_vlm(config)
    losses = [e["loss"] for e in json.loads((run / "log_history.json").read_text()) if "loss" in e]
    assert len(losses) == 2 and np.isfinite(losses).all()
    assert isinstance(
        AutoModelForImageTextToText.from_pretrained(run / "merged"), SubobjectLlavaForConditionalGeneration
    )


def test_a_chat_template_whose_earlier_turns_change_is_kept_with_a_one_line_warning():
    from subobject_vlm.conversion import chat_template_with_generation_markers
    from subobject_vlm.families import family_of
    from subobject_vlm.tiny import tiny_tokenizer

    tokenizer = tiny_tokenizer()
    tokenizer.chat_template = (  # the last turn is tagged: a prefix of the chat does not render as a prefix
        "{% for m in messages %}{% if loop.last %}LAST {% endif %}{{ m['content'][0]['text'] }} {% endfor %}"
    )
    with pytest.warns(UserWarning, match="could not be given {% generation %} markers") as caught:
        kept = chat_template_with_generation_markers(tokenizer, family_of("smolvlm"), "src")
    assert kept == tokenizer.chat_template and "\n" not in str(caught[0].message)
