"""LoRA instruction tuning of SubobjectLlava with the Hugging Face ``Trainer`` + PEFT, from a YAML config.

>>> output_dir = train_vlm("configs/vlm_tiny_smoke.yaml")      # adapter + trained modules + processor
>>> merge_lora(output_dir, output_dir / "merged")              # a plain SubobjectLlava checkpoint

From a shell: ``subobject-vlm train --config X`` or ``python -m subobject_vlm.commands.train --config X``
(also under ``torchrun --nproc_per_node N``; the Trainer handles DDP). What is trained: LoRA adapters on the
language model's attention and MLP projections (matched by module name under ``language_model`` only), the
whole :class:`MaskPooledEmbedding` and the start/end-of-image vectors (PEFT ``modules_to_save``), and, with
``model.train_vision_tower``, the vision tower; everything else is frozen.

The output folder gets ``adapter_model.safetensors`` + ``adapter_config.json`` (LoRA and the fully trained
modules), the processor, ``base/`` (the base model, when it was built here rather than loaded from a
checkpoint), ``preprocessed/`` (cached segmentations and tokens), ``log_history.json``, ``loss_curve.png``
and, with ``merge: true``, ``merged/`` (adapters merged: a standalone SubobjectLlava checkpoint).

Config layout (unknown keys are errors)::

    output_dir: runs/vlm
    seed: 0
    torch_threads: null
    resume_from_checkpoint: null       # true | "auto" | a checkpoint folder
    merge: true                        # write output_dir/merged after training
    model:
      pretrained: null                 # a SubobjectLlava checkpoint (e.g. from `subobject-vlm convert`)
      text_model: null                 # or build one from a causal LM ...
      vision_model: null               # ... and an HF vision model (CLIP, SigLIP)
      tiny: false                      # or a tiny random model + word-level tokenizer (smoke runs)
      config_overrides: {}             # SubobjectLlavaConfig fields, e.g. shape_resolution
      dtype: float32                   # float32 | bfloat16 | float16
      chat_template: null              # default: the checkpoint's, else DEFAULT_CHAT_TEMPLATE
      train_vision_tower: false
    image_processor: {}                # SubobjectImageProcessor settings (max_tokens, boundary_model, ...)
    lora: {r: 16, alpha: 32, dropout: 0.05, target_modules: [q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj,
           down_proj], modules_to_save: []}   # modules_to_save: extra modules trained in full
    data:
      train: {path: llava.json, image_folder: images}   # or {synthetic: {num_images: 64, size: 64}}
      val: null
      max_length: 2048
      segment_batch_size: 16
      num_proc: null
      precomputed: null                # a `subobject-vlm precompute` output: read label maps, never segment
    training: {max_steps: 1000, learning_rate: 2e-4, ...}   # any transformers.TrainingArguments field
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ..data.synthetic_shapes import make_synthetic_shapes
from ..devices import DTYPES
from .config import (
    make_training_arguments,
    resolve_resume,
)
from .loss_history import save_loss_history
from .vlm_config import DataSection, VLMTrainingConfig, load_config
from .vlm_data import (
    SubobjectCollator,
    load_conversations,
    precompute_segmentations,
    tokenize_conversations,
    use_precomputed_segmentations,
)
from .vlm_model import build_model_and_processor, lora_config, merge_lora

# ------------------------------------------------------------------------------------------------- data


def _conversations(source, output_dir: Path, name: str, with_keys: bool = False):
    if source.synthetic is not None:
        options = {"num_images": 32, "size": 64, "seed": 0, **source.synthetic}
        folder = (
            output_dir / "synthetic" / f"{name}-{options['num_images']}-{options['size']}-{options['seed']}"
        )
        path = folder / "data.json"
        if not path.exists():
            make_synthetic_shapes(folder, **options)
        return load_conversations(path, limit=source.limit, with_keys=with_keys)
    return load_conversations(
        source.path,
        source.image_folder,
        split=source.split,
        image_column=source.image_column,
        conversations_column=source.conversations_column,
        limit=source.limit,
        with_keys=with_keys,
    )


def prepare_dataset(source, processor, data: DataSection, output_dir: Path, name: str):
    """Conversations -> cached segmentations (or the precomputed ones of ``data.precomputed``) -> cached tokens
    (all under ``output_dir/preprocessed``)."""
    cache_dir = output_dir / "preprocessed"
    dataset = _conversations(source, output_dir, name, with_keys=data.precomputed is not None)
    if data.precomputed is not None:
        dataset = use_precomputed_segmentations(
            dataset, data.precomputed, processor.image_processor, cache_dir
        )
    else:
        dataset = precompute_segmentations(
            dataset,
            processor.image_processor,
            cache_dir,
            batch_size=data.segment_batch_size,
            num_proc=data.num_proc,
        )
    return tokenize_conversations(dataset, processor, data.max_length, cache_dir, num_proc=data.num_proc)


# ------------------------------------------------------------------------------------------------ train


def _training_arguments(config: VLMTrainingConfig, has_val: bool):

    defaults: dict[str, Any] = {
        "per_device_train_batch_size": 4,
        "per_device_eval_batch_size": 4,
        "learning_rate": 2e-4,
        "weight_decay": 0.0,
        "lr_scheduler_type": "cosine",
        "warmup_steps": 0.03,
        "max_grad_norm": 1.0,
        "logging_steps": 10,
        "save_strategy": "steps",
        "save_steps": 500,
        "save_total_limit": 2,
        "dataloader_num_workers": 0,
        "report_to": "none",
        "remove_unused_columns": False,
        "label_names": ["labels"],
        "ddp_find_unused_parameters": False,
    }
    if has_val:
        defaults.update(eval_strategy="steps", eval_steps=500)
    return make_training_arguments(defaults, config.training, config.output_dir, config.seed)


def train_vlm(config: str | os.PathLike | dict) -> Path:
    """Train LoRA adapters + the subobject embedding as described by ``config``; returns the output folder.

    Raises ``ConfigError`` (a ``ValueError``) naming the offending key for a bad config, before any training.
    """
    from peft import get_peft_model
    from transformers import Trainer, set_seed

    config = load_config(config)
    if config.torch_threads:
        torch.set_num_threads(config.torch_threads)
    args = _training_arguments(config, has_val=config.data.val is not None)
    resume = resolve_resume(config.resume_from_checkpoint, config.output_dir)
    output_dir = Path(args.output_dir)

    set_seed(config.seed)  # same random initialisation on every rank
    model, processor, from_checkpoint = build_model_and_processor(config)
    with args.main_process_first(desc="segment and tokenize the training data", local=False):
        train_dataset = prepare_dataset(config.data.train, processor, config.data, output_dir, "train")
        val_dataset = None
        if config.data.val is not None:
            val_dataset = prepare_dataset(config.data.val, processor, config.data, output_dir, "val")
        base_dir = Path(config.model.pretrained) if from_checkpoint else output_dir / "base"
        if not from_checkpoint and args.process_index == 0:
            model.save_pretrained(base_dir)  # the adapters need their base model to be reloaded and merged
            processor.save_pretrained(base_dir)

    if args.gradient_checkpointing:
        model.enable_input_require_grads()
    peft_model = get_peft_model(model, lora_config(config.lora, config.model.train_vision_tower))
    base_name = str(base_dir.resolve()) if base_dir.exists() else str(config.model.pretrained)
    peft_model.peft_config["default"].base_model_name_or_path = base_name
    if args.process_index == 0:
        peft_model.print_trainable_parameters()

    trainer = Trainer(
        model=peft_model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=val_dataset,
        data_collator=SubobjectCollator(processor.image_processor, processor.tokenizer.pad_token_id),
        processing_class=processor,
    )
    trainer.train(resume_from_checkpoint=resume)
    trainer.save_model(str(output_dir))
    if trainer.is_world_process_zero():
        processor.save_pretrained(output_dir)
        save_loss_history(trainer.state.log_history, output_dir)
        if config.merge:  # in the dtype the config names, whatever the base checkpoint was saved in
            merge_lora(output_dir, output_dir / "merged", dtype=DTYPES[config.model.dtype])
    args.distributed_state.wait_for_everyone()
    return output_dir


__all__ = ["prepare_dataset", "train_vlm"]
