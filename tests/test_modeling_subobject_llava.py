"""SubobjectLlava: config, image tokens with boundaries, placeholder scattering, loss masking, generation, saving."""

import pytest
import torch
from transformers import AutoConfig, AutoModel, AutoModelForImageTextToText, CLIPVisionConfig, LlamaConfig

from subobject_vlm import tiny
from subobject_vlm.configuration_subobject_llava import SubobjectLlavaConfig, num_image_placeholders
from subobject_vlm.modeling_subobject_llava import SubobjectLlavaForConditionalGeneration, SubobjectLlavaModel

IMAGE = 127  # placeholder id of the tiny models
PAD = 0


def tiny_text_config() -> LlamaConfig:
    return tiny.tiny_text_config(128, pad_token_id=PAD, bos_token_id=1, eos_token_id=2)


def tiny_clip_config() -> CLIPVisionConfig:
    return tiny.tiny_vision_config(32)


@pytest.fixture(scope="session")
def tiny_config() -> SubobjectLlavaConfig:
    return SubobjectLlavaConfig(
        vision_config=tiny_clip_config(),
        text_config=tiny_text_config(),
        image_token_index=IMAGE,
        shape_resolution=4,
        max_tokens_per_image=16,
    )


@pytest.fixture(scope="session")
def tiny_model(tiny_config) -> SubobjectLlavaForConditionalGeneration:
    torch.manual_seed(0)
    return SubobjectLlavaForConditionalGeneration(tiny_config).eval()


@pytest.fixture(scope="session")
def tiny_timm_model() -> SubobjectLlavaForConditionalGeneration:
    torch.manual_seed(0)
    config = SubobjectLlavaConfig(
        timm_model_name="test_convnext",
        feature_layer=-2,
        text_config=tiny_text_config(),
        image_token_index=IMAGE,
    )
    return SubobjectLlavaForConditionalGeneration(config).eval()


def two_images(size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixels (2, 3, S, S) and label maps (2, S, S): image 0 has 3 regions, image 1 has 2."""
    pixels = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    labels = torch.zeros(2, size, size, dtype=torch.int32)
    labels[0, : size // 2] = 1
    labels[0, size // 2 :, size // 2 :] = 2
    labels[1, :, size // 4 :] = 1
    return pixels, labels


def mixed_batch() -> torch.Tensor:
    """Three prompts of equal length (no padding): image 0 (3 + 2 slots), text only, image 1 (2 + 2 slots)."""
    return torch.tensor(
        [
            [1, 5] + [IMAGE] * 5 + [7, 8],
            [1, 9, 10, 11, 12, 13, 14, 15, 16],
            [1] + [IMAGE] * 4 + [20, 21, 22, 23],
        ]
    )


def capture_inputs_embeds(model: SubobjectLlavaForConditionalGeneration, **inputs) -> torch.Tensor:
    """The (B, L, D) embeddings the language model receives."""
    seen = {}

    def hook(module, args, kwargs):
        seen["embeds"] = kwargs["inputs_embeds"]

    handle = model.model.language_model.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        with torch.no_grad():
            model(**inputs)
    finally:
        handle.remove()
    return seen["embeds"]


# configuration


def test_num_image_placeholders_adds_start_and_end_slots(tiny_config):
    assert num_image_placeholders(5) == 7
    assert tiny_config.num_image_placeholders(torch.tensor([3, 2])).tolist() == [5, 4]


def test_feature_layer_defaults_to_llava_layer_for_hf_and_last_stage_for_timm():
    assert SubobjectLlavaConfig(vision_config=tiny_clip_config()).feature_layer == -2
    assert SubobjectLlavaConfig(timm_model_name="test_convnext").feature_layer == -1


def test_image_token_id_is_an_alias_of_image_token_index(tiny_config):
    assert tiny_config.image_token_id == tiny_config.image_token_index == IMAGE


@pytest.mark.parametrize(
    "settings",
    [
        {"shape_resolution": 0},
        {"projector_depth": 0},
        {"projector_hidden_size": -4},
        {"max_tokens_per_image": 0},
        {"image_token_index": -1},
        {"projector_hidden_act": "tanhshrink"},
        {"shape_resolution": "8"},
        {"timm_model_name": "test_convnext", "vision_config": {"model_type": "clip_vision_model"}},
    ],
    ids=lambda s: "-".join(s),
)
def test_config_rejects_nonsense_with_value_error(settings):
    with pytest.raises(ValueError):
        SubobjectLlavaConfig(**settings)


def test_config_round_trips_through_auto_config(tiny_config, tmp_path):
    tiny_config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, SubobjectLlavaConfig)
    assert loaded.vision_config.hidden_size == 32 and loaded.text_config.vocab_size == 128
    assert (loaded.shape_resolution, loaded.image_token_id) == (4, IMAGE)


def test_auto_model_builds_the_base_model_from_the_config(tiny_config):
    assert isinstance(AutoModel.from_config(tiny_config), SubobjectLlavaModel)


# image features


def test_image_features_wrap_each_image_in_learned_start_and_end_vectors(tiny_model):
    pixels, labels = two_images()
    with torch.no_grad():
        out = tiny_model.get_image_features(pixels, labels)
    boundary = tiny_model.model.image_boundary_embeddings.weight
    assert out.tokens_per_image.tolist() == [3, 2]
    assert [len(x) for x in out.pooler_output] == [5, 4]
    for sequence in out.pooler_output:
        torch.testing.assert_close(sequence[0], boundary[0])
        torch.testing.assert_close(sequence[-1], boundary[1])
    torch.testing.assert_close(torch.cat([x[1:-1] for x in out.pooler_output]), out.image_tokens)


def test_image_tokens_are_the_mask_pooled_embedding_of_the_clip_grid(tiny_model):
    pixels, labels = two_images()
    with torch.no_grad():
        out = tiny_model.get_image_features(pixels, labels)
        grid = tiny_model.model.vision_tower(pixels, output_hidden_states=True).hidden_states[-2][:, 1:]
        grid = grid.transpose(1, 2).reshape(2, 32, 4, 4)  # CLS dropped, 32x32 pixels / patch 8
        expected, _ = tiny_model.model.multi_modal_projector(grid, labels)
    assert out.last_hidden_state.shape == (2, 32, 4, 4)
    torch.testing.assert_close(out.image_tokens, expected)


def test_siglip_tower_without_cls_token_gives_its_whole_patch_grid():
    from transformers import SiglipVisionConfig

    torch.manual_seed(0)
    vision = tiny.tiny_vision_config(32, SiglipVisionConfig)
    config = SubobjectLlavaConfig(
        vision_config=vision, text_config=tiny_text_config(), image_token_index=IMAGE, max_tokens_per_image=16
    )
    model = SubobjectLlavaForConditionalGeneration(config).eval()
    pixels, labels = two_images()
    with torch.no_grad():
        out = model.get_image_features(pixels, labels)
        grid = model.model.vision_tower(pixels, output_hidden_states=True).hidden_states[
            -2
        ]  # (2, 16, 32): no CLS
        expected, _ = model.model.multi_modal_projector(grid.transpose(1, 2).reshape(2, 32, 4, 4), labels)
    assert out.last_hidden_state.shape == (2, 32, 4, 4)
    torch.testing.assert_close(out.image_tokens, expected)


def test_timm_backbone_gives_one_token_per_region(tiny_timm_model):
    pixels, labels = two_images(size=64)
    with torch.no_grad():
        out = tiny_timm_model.get_image_features(pixels, labels)
    assert out.last_hidden_state.shape == (2, 48, 4, 4)  # test_convnext stage -2: 48 channels, stride 16
    assert out.image_tokens.shape == (5, 32)


def test_label_maps_are_required_with_pixel_values(tiny_model):
    with pytest.raises(ValueError, match="label_maps"):
        tiny_model.get_image_features(torch.randn(1, 3, 32, 32))


def test_images_with_more_regions_than_max_tokens_per_image_are_rejected(tiny_model):
    labels = torch.arange(32 * 32, dtype=torch.int32).view(1, 32, 32) // 32  # 32 regions > 16
    with pytest.raises(ValueError, match="max_tokens_per_image"):
        tiny_model.get_image_features(torch.randn(1, 3, 32, 32), labels)


# forward


def test_forward_scatters_image_sequences_into_placeholders_in_order(tiny_model):
    pixels, labels = two_images()
    ids = mixed_batch()
    embeds = capture_inputs_embeds(tiny_model, input_ids=ids, pixel_values=pixels, label_maps=labels)
    with torch.no_grad():
        images = torch.cat(tiny_model.get_image_features(pixels, labels).pooler_output)
        words = tiny_model.get_input_embeddings()(ids.masked_fill(ids == IMAGE, 0))
    torch.testing.assert_close(embeds[ids == IMAGE], images)
    torch.testing.assert_close(embeds[ids != IMAGE], words[ids != IMAGE])


def test_placeholder_count_mismatch_raises_a_clear_error(tiny_model):
    pixels, labels = two_images()
    ids = mixed_batch()[:, :-1].clone()
    ids[2, 4] = 30  # image 1 now has 3 placeholders instead of 4
    with pytest.raises(ValueError, match="placeholder"):
        tiny_model(input_ids=ids, pixel_values=pixels, label_maps=labels)


def test_placeholders_without_images_raise(tiny_model):
    with pytest.raises(ValueError, match="no pixel_values"):
        tiny_model(input_ids=mixed_batch())


def test_placeholder_id_may_lie_outside_the_vocabulary():
    config = SubobjectLlavaConfig(
        vision_config=tiny_clip_config(), text_config=tiny_text_config(), image_token_index=128
    )
    model = SubobjectLlavaForConditionalGeneration(config).eval()
    pixels, labels = two_images()
    ids = mixed_batch().masked_fill(mixed_batch() == IMAGE, 128)
    with torch.no_grad():
        logits = model(input_ids=ids, pixel_values=pixels, label_maps=labels).logits
    assert logits.shape == (3, 9, 128)


def test_loss_ignores_labels_at_image_and_padding_positions(tiny_model):
    pixels, labels = two_images()
    ids = torch.cat([torch.full((3, 2), PAD), mixed_batch()], dim=1)  # left padding
    attention = (torch.arange(ids.shape[1]) >= 2).long().expand(3, -1)
    clean = ids.masked_fill((ids == IMAGE) | (attention == 0), -100)
    inputs = {"input_ids": ids, "attention_mask": attention, "pixel_values": pixels, "label_maps": labels}
    with torch.no_grad():
        raw_loss = tiny_model(**inputs, labels=ids).loss
        clean_loss = tiny_model(**inputs, labels=clean).loss
    torch.testing.assert_close(raw_loss, clean_loss)


def test_training_loss_reaches_vision_tower_projector_and_boundaries(tiny_config):
    torch.manual_seed(0)
    model = SubobjectLlavaForConditionalGeneration(tiny_config).train()
    pixels, labels = two_images()
    ids = mixed_batch()
    model(input_ids=ids, pixel_values=pixels, label_maps=labels, labels=ids).loss.backward()
    inner = model.model
    for module in (inner.vision_tower, inner.multi_modal_projector, inner.image_boundary_embeddings):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())


def test_bfloat16_model_runs_with_float32_pixels(tiny_config):
    model = SubobjectLlavaForConditionalGeneration(tiny_config).eval().to(torch.bfloat16)
    pixels, labels = two_images()
    with torch.no_grad():
        out = model(input_ids=mixed_batch(), pixel_values=pixels, label_maps=labels, labels=mixed_batch())
    assert out.logits.dtype == torch.bfloat16
    assert torch.isfinite(out.loss)


# generation


def left_padded_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """The mixed batch with prompts of different lengths, left-padded: ids (3, 11) and attention mask."""
    ids = torch.cat([torch.full((3, 2), PAD), mixed_batch()], dim=1)
    ids[1] = torch.cat([torch.full((4,), PAD), mixed_batch()[1, :7]])
    attention = (ids != PAD).long()
    return ids, attention


def greedy_by_hand(model, ids, attention, pixels, labels, steps):
    """Greedy decoding with a full forward (images included, no cache) at every step."""
    for _ in range(steps):
        with torch.no_grad():
            logits = model(
                input_ids=ids,
                attention_mask=attention,
                pixel_values=pixels,
                label_maps=labels,
                use_cache=False,
            ).logits
        ids = torch.cat([ids, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
        attention = torch.cat([attention, torch.ones_like(attention[:, :1])], dim=1)
    return ids


def test_greedy_generate_on_a_left_padded_mixed_batch_matches_full_forward_decoding(tiny_model):
    pixels, labels = two_images()
    ids, attention = left_padded_batch()
    generated = tiny_model.generate(
        input_ids=ids,
        attention_mask=attention,
        pixel_values=pixels,
        label_maps=labels,
        max_new_tokens=5,
        do_sample=False,
    )
    assert torch.equal(generated, greedy_by_hand(tiny_model, ids, attention, pixels, labels, 5))


def test_generate_encodes_the_images_once(tiny_model):
    pixels, labels = two_images()
    calls = []
    handle = tiny_model.model.vision_tower.register_forward_hook(lambda *args: calls.append(1))
    try:
        tiny_model.generate(input_ids=mixed_batch(), pixel_values=pixels, label_maps=labels, max_new_tokens=4)
    finally:
        handle.remove()
    assert len(calls) == 1


def test_generate_accepts_the_image_processor_outputs_including_boxes(tiny_model):
    from subobject_vlm.embedding import region_boxes

    pixels, labels = two_images()
    inputs = {
        "pixel_values": pixels,
        "label_maps": labels,
        "num_tokens": torch.tensor([3, 2]),
        "boxes": region_boxes(labels),  # (5, 4), as the image processor returns them
    }
    generated = tiny_model.generate(input_ids=mixed_batch(), **inputs, max_new_tokens=3, do_sample=False)
    assert generated.shape == (3, 12)


def test_boxes_that_do_not_match_the_regions_are_rejected(tiny_model):
    pixels, labels = two_images()
    with pytest.raises(ValueError, match="boxes"):
        tiny_model.get_image_features(pixels, labels, boxes=torch.zeros(4, 4))


def test_sampling_generate_on_a_mixed_batch_is_reproducible_with_a_seed(tiny_model):
    pixels, labels = two_images()
    inputs = {
        "input_ids": mixed_batch(),
        "pixel_values": pixels,
        "label_maps": labels,
        "num_tokens": torch.tensor([3, 2]),
    }
    runs = []
    for _ in range(2):
        torch.manual_seed(1)
        runs.append(tiny_model.generate(**inputs, max_new_tokens=5, do_sample=True, top_k=20))
    assert runs[0].shape == (3, 14)
    assert torch.equal(runs[0], runs[1])


def test_beam_search_on_a_mixed_batch_matches_each_sample_alone(tiny_model):
    pixels, labels = two_images()
    ids = mixed_batch()
    settings = {"max_new_tokens": 4, "num_beams": 3, "num_return_sequences": 2, "do_sample": False}
    batched = tiny_model.generate(input_ids=ids, pixel_values=pixels, label_maps=labels, **settings)
    alone = torch.cat(
        [
            tiny_model.generate(
                input_ids=ids[:1], pixel_values=pixels[:1], label_maps=labels[:1], **settings
            ),
            tiny_model.generate(input_ids=ids[1:2], **settings),
            tiny_model.generate(
                input_ids=ids[2:], pixel_values=pixels[1:], label_maps=labels[1:], **settings
            ),
        ]
    )
    assert torch.equal(batched, alone)


# saving


def test_save_pretrained_round_trips_through_safetensors_and_the_auto_class(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    loaded = AutoModelForImageTextToText.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, SubobjectLlavaForConditionalGeneration)
    pixels, labels = two_images()
    inputs = {"input_ids": mixed_batch(), "pixel_values": pixels, "label_maps": labels}
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs).logits, tiny_model(**inputs).logits)


def test_timm_backbone_model_round_trips_without_downloading(tiny_timm_model, tmp_path):
    tiny_timm_model.save_pretrained(tmp_path)
    loaded = AutoModelForImageTextToText.from_pretrained(tmp_path).eval()
    pixels, labels = two_images(size=64)
    with torch.no_grad():
        torch.testing.assert_close(
            loaded.get_image_features(pixels, labels).image_tokens,
            tiny_timm_model.get_image_features(pixels, labels).image_tokens,
        )


def test_placeholders_moved_between_samples_are_refused_even_when_the_total_matches(tiny_model):
    pixels, labels = two_images()  # image 0: 3 regions -> 5 placeholders, image 1: 2 regions -> 4
    ids = torch.full((2, 8), 5)
    ids[0, 1:7] = IMAGE  # 6: image 0 plus the first placeholder of image 1
    ids[1, 1:4] = IMAGE  # 3: the rest of image 1
    with pytest.raises(
        ValueError, match="sample 0 holds 6 image placeholder tokens, which ends inside an image"
    ):
        tiny_model(input_ids=ids, pixel_values=pixels, label_maps=labels)
    ids[0, 6] = 5  # whole images per sample: 5 and 4 would need 4 in sample 1
    ids[1, 4] = IMAGE
    tiny_model(input_ids=ids, pixel_values=pixels, label_maps=labels)
