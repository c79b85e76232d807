"""TRL's SFTTrainer fine-tunes a SubobjectLlava (full and LoRA) from messages + images, assistant tokens only,
the default model and a converted checkpoint of every family."""

import numpy as np
import pytest
from PIL import Image

trl = pytest.importorskip("trl", reason="TRL is a test extra: pip install -e '.[test]'")

from conftest import tiny_vlm  # noqa: E402
from test_families import MODEL_TYPES, convert_tiny_source  # noqa: E402


def messages_dataset(count: int = 6):
    import datasets

    rows = []
    for i in range(count):
        image = np.zeros((32, 32, 3), np.uint8)
        image[8:24, 8:24] = (200, 30, 30) if i % 2 else (30, 30, 200)
        question = [{"type": "image"}, {"type": "text", "text": "What is in the image ?"}]
        answer = [{"type": "text", "text": f"a {'red' if i % 2 else 'blue'} square"}]
        messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
        rows.append({"images": [Image.fromarray(image)], "messages": messages})
    return datasets.Dataset.from_list(rows)


@pytest.fixture(scope="module", params=MODEL_TYPES)
def converted(request, tmp_path_factory):
    """A converted tiny checkpoint of each family, built once."""
    return convert_tiny_source(request.param, tmp_path_factory)[2]


def sft_config(output_dir, **settings):
    """Few CPU steps with assistant-only loss."""
    defaults = dict(
        max_steps=3,
        per_device_train_batch_size=2,
        learning_rate=1e-3,
        max_length=None,
        assistant_only_loss=True,
        report_to="none",
        use_cpu=True,
        save_strategy="no",
        logging_steps=1,
        dataloader_pin_memory=False,
    )
    return trl.SFTConfig(output_dir=str(output_dir), **{**defaults, **settings})


@pytest.mark.parametrize("lora", [False, True])
def test_sft_trainer_trains_saves_and_reloads(lora, tmp_path):
    from transformers import AutoModelForImageTextToText

    model, processor = tiny_vlm()
    base_dir = tmp_path / "base"
    model.save_pretrained(base_dir)
    peft_config = None
    if lora:
        from peft import LoraConfig

        peft_config = LoraConfig(
            r=4,
            target_modules=r".*language_model.*\.(q_proj|v_proj)",
            modules_to_save=["multi_modal_projector", "image_boundary_embeddings"],  # new: trained in full
        )
    trainer = trl.SFTTrainer(
        model=model,
        args=sft_config(tmp_path / "run"),
        train_dataset=messages_dataset(),
        processing_class=processor,
        peft_config=peft_config,
    )
    trainer.train()
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    assert len(losses) == 3 and np.isfinite(losses).all()
    trainer.save_model(str(tmp_path / "out"))
    if lora:
        from peft import PeftModel

        base = AutoModelForImageTextToText.from_pretrained(base_dir)
        reloaded = PeftModel.from_pretrained(base, str(tmp_path / "out"))
    else:
        reloaded = AutoModelForImageTextToText.from_pretrained(tmp_path / "out")
    batch = processor(
        images=messages_dataset(1)[0]["images"], text="USER: <image> What ? ASSISTANT:", return_tensors="pt"
    )
    assert (
        reloaded.generate(**batch, max_new_tokens=2, min_new_tokens=2).shape[1]
        == batch["input_ids"].shape[1] + 2
    )


def test_sft_trainer_trains_a_converted_checkpoint_of_every_family_on_its_assistant_replies_only(
    converted, tmp_path
):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(converted)
    trainer = trl.SFTTrainer(
        model=AutoModelForImageTextToText.from_pretrained(converted),
        args=sft_config(tmp_path / "run", max_steps=1),
        train_dataset=messages_dataset(2),
        processing_class=processor,
    )
    batch = next(iter(trainer.get_train_dataloader()))
    replies = {"a red square", "a blue square"}
    for labels in batch["labels"]:
        text = processor.decode(labels[labels != -100])
        assert any(text.startswith(reply) for reply in replies), text  # the reply (and its end of turn) only
        assert "What" not in text
    trainer.train()
    [loss] = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    assert np.isfinite(loss)
