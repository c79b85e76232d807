"""SubobjectLlavaProcessor: <image> expansion to num_tokens + 2 placeholders, checks, decoding, saving."""

import numpy as np
import pytest
import torch
from transformers import AutoProcessor, LlamaConfig

from subobject_vlm.configuration_subobject_llava import SubobjectLlavaConfig
from subobject_vlm.image_processing_subobject import SubobjectImageProcessor
from subobject_vlm.processing_subobject_llava import (
    DEFAULT_CHAT_TEMPLATE,
    SubobjectLlavaProcessor,
    add_image_token,
)
from subobject_vlm.tiny import build_tiny_model, tiny_tokenizer

PROMPT = "USER: <image>\nWhat is in the image? ASSISTANT:"


@pytest.fixture(scope="module")
def processor() -> SubobjectLlavaProcessor:
    image_processor = SubobjectImageProcessor(
        boundary_model="gradient",
        max_tokens=16,
        size={"height": 32, "width": 32},
        label_size={"height": 16, "width": 16},
    )
    return SubobjectLlavaProcessor(image_processor=image_processor, tokenizer=tiny_tokenizer())


def flat_image() -> np.ndarray:
    """One colour: one region."""
    return np.full((40, 40, 3), 90, np.uint8)


def split_image() -> np.ndarray:
    """Two colours, left and right halves: more than one region."""
    image = flat_image()
    image[:, 20:] = (230, 20, 20)
    return image


def test_each_image_token_becomes_num_tokens_plus_two_placeholders(processor):
    batch = processor(
        images=[flat_image(), split_image()], text=[PROMPT, PROMPT], padding=True, return_tensors="pt"
    )
    counts = (batch["input_ids"] == processor.image_token_id).sum(1)
    assert batch["num_tokens"][0] != batch["num_tokens"][1]
    assert counts.tolist() == (batch["num_tokens"] + 2).tolist()
    assert batch["label_maps"].shape == (2, 16, 16) and batch["pixel_values"].shape == (2, 3, 32, 32)


def test_placeholders_are_one_contiguous_run_where_the_image_token_was(processor):
    ids = processor(images=split_image(), text=PROMPT, return_tensors="pt")["input_ids"][0]
    positions = torch.nonzero(ids == processor.image_token_id).flatten()
    assert torch.equal(positions, torch.arange(positions[0], positions[0] + len(positions)))
    assert processor.decode(ids[: positions[0]]) == "<s> USER :"


def test_more_images_than_image_tokens_raises(processor):
    with pytest.raises(ValueError, match="same as the number of images"):
        processor(images=[flat_image(), flat_image()], text=PROMPT)


def test_image_tokens_without_images_raise(processor):
    with pytest.raises(ValueError, match="no images were passed"):
        processor(text=PROMPT)


def test_truncation_that_cuts_image_placeholders_raises(processor):
    with pytest.raises(ValueError, match="truncation cuts into the image tokens of sample 0"):
        processor(images=split_image(), text=PROMPT, truncation=True, max_length=4)


def test_truncation_after_the_image_placeholders_is_allowed(processor):
    full = processor(images=flat_image(), text=PROMPT)["input_ids"][0]
    cut = processor(images=flat_image(), text=PROMPT, truncation=True, max_length=len(full) - 2)["input_ids"][
        0
    ]
    assert cut == full[:-2]


def test_decoding_leaves_image_placeholders_out(processor):
    ids = processor(images=split_image(), text=PROMPT, return_tensors="pt")["input_ids"]
    assert processor.batch_decode(ids, skip_special_tokens=True) == [
        "USER : What is in the image? ASSISTANT :"
    ]
    assert "<image>" not in processor.decode(ids[0])


def test_tokenizer_without_image_token_is_rejected_with_a_hint(processor):
    tokenizer = tiny_tokenizer()
    with pytest.raises(ValueError, match="add_image_token"):
        SubobjectLlavaProcessor(
            image_processor=processor.image_processor, tokenizer=tokenizer, image_token="<img>"
        )


def test_add_image_token_adds_a_special_token_and_sets_the_config_id():
    tokenizer = tiny_tokenizer()
    config = SubobjectLlavaConfig(text_config=LlamaConfig(vocab_size=len(tokenizer)))
    token_id = add_image_token(tokenizer, config, image_token="<region>")
    assert tokenizer.encode("a <region>", add_special_tokens=False)[-1] == token_id == config.image_token_id
    assert add_image_token(tokenizer, image_token="<region>") == token_id  # idempotent


def test_default_chat_template_renders_llava_prompts(processor):
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is in the image?"}]}
    ]
    assert processor.chat_template == DEFAULT_CHAT_TEMPLATE
    assert processor.apply_chat_template(messages, add_generation_prompt=True) == PROMPT


def test_auto_processor_round_trip_keeps_tokenizer_template_and_settings(processor, tmp_path):
    processor.save_pretrained(tmp_path)
    loaded = AutoProcessor.from_pretrained(tmp_path)
    assert isinstance(loaded, SubobjectLlavaProcessor)
    assert isinstance(loaded.image_processor, SubobjectImageProcessor)
    assert (loaded.image_token_id, loaded.chat_template) == (
        processor.image_token_id,
        processor.chat_template,
    )
    assert loaded.image_processor.label_size == {"height": 16, "width": 16}
    a = processor(images=split_image(), text=PROMPT)["input_ids"]
    assert loaded(images=split_image(), text=PROMPT)["input_ids"] == a


def test_processor_outputs_drive_generation(processor):
    torch.manual_seed(0)
    model = build_tiny_model(processor.tokenizer, max_tokens_per_image=16).eval()
    inputs = processor(images=[split_image()], text=[PROMPT], return_tensors="pt")
    out = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert out.shape == (1, inputs["input_ids"].shape[1] + 3)


def test_decode_takes_one_sequence_or_a_batch_as_the_tokenizer_does():
    processor = SubobjectLlavaProcessor(image_processor=SubobjectImageProcessor(), tokenizer=tiny_tokenizer())
    ids = processor.tokenizer(["a red", "a blue square"])["input_ids"]
    assert processor.decode(ids) == processor.tokenizer.batch_decode(ids)
    assert processor.decode(ids[0]) == processor.tokenizer.decode(ids[0])
    with_image = [processor.image_token_id, *ids[0]]
    assert processor.decode(with_image) == processor.tokenizer.decode(ids[0])  # placeholders left out


def test_model_input_names_list_every_key_the_processors_return(astronaut):
    image_processor = SubobjectImageProcessor(boundary_model="patch", max_tokens=4)
    processor = SubobjectLlavaProcessor(image_processor=image_processor, tokenizer=tiny_tokenizer())
    batch = processor(images=astronaut, text="<image> a red", return_tensors="pt")
    assert set(batch) == set(processor.model_input_names)
    assert set(image_processor(astronaut)) == set(image_processor.model_input_names)


def test_the_default_chat_template_marks_the_assistant_tokens_for_the_loss():
    """``{% generation %}`` around assistant replies: ``return_assistant_tokens_mask`` (and TRL's
    ``assistant_only_loss``) see exactly the reply and its end-of-sequence token."""
    tokenizer = tiny_tokenizer()
    tokenizer.chat_template = DEFAULT_CHAT_TEMPLATE
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is in the image ?"}]},
        {"role": "assistant", "content": "a red square"},
        {"role": "user", "content": "What colour ?"},
        {"role": "assistant", "content": [{"type": "text", "text": "red"}]},
    ]
    out = tokenizer.apply_chat_template(
        messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    marked = [
        tokenizer.convert_ids_to_tokens(i) for i, m in zip(out["input_ids"], out["assistant_masks"]) if m
    ]
    assert marked == ["a", "red", "square", "</s>", "red", "</s>"]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    assert (
        text
        == "USER: <image>\nWhat is in the image ? ASSISTANT: a red square</s> USER: What colour ? ASSISTANT: red</s> "
    )


def test_the_image_text_to_text_pipeline_runs_a_saved_model(tmp_path):
    from conftest import tiny_vlm
    from PIL import Image
    from transformers import pipeline

    model, processor = tiny_vlm()
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    pipe = pipeline("image-text-to-text", model=str(tmp_path))
    image = Image.fromarray(np.zeros((32, 32, 3), np.uint8))
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "image", "image": image},
                {"type": "text", "text": "What is in the image ?"},
            ],
        }
    ]
    [out] = pipe(text=messages, max_new_tokens=3)
    reply = out["generated_text"][-1]
    assert reply["role"] == "assistant" and isinstance(reply["content"], str)
