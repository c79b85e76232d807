"""Train a boundary model (a one-label SegFormer, or the small EdgeNet FCN) with the Hugging Face ``Trainer``, from a YAML config.

>>> output_dir = train_boundary("configs/boundary_bsds_b0.yaml")
>>> model = SegformerForSemanticSegmentation.from_pretrained(output_dir)   # or BoundaryPredictor.from_pretrained(...)

From a shell: ``python -m subobject_vlm.commands.train_boundary --config X`` (or ``torchrun --nproc_per_node N
-m subobject_vlm.commands.train_boundary --config X``; the Trainer handles DDP). The output
folder gets the final (or best, with ``load_best_model_at_end``) model as safetensors, its
``preprocessor_config.json`` (``SegformerImageProcessor`` at the training resolution), ``checkpoint-*``
folders, ``log_history.json`` and ``loss_curve.png``.

Config layout (every section is optional except ``output_dir`` and ``data.train``; unknown keys are errors)::

    output_dir: runs/boundary_bsds_b0
    seed: 0
    torch_threads: null            # torch.set_num_threads, e.g. 1 on a shared CPU
    resume_from_checkpoint: null   # true (latest checkpoint in output_dir), "auto" (if one exists) or a path
    model: {architecture: segformer, pretrained: null, size: b0, overrides: {}}   # or architecture: edgenet
    data:
      train: [{kind: bsds, split: train}]   # kinds: bsds (root, split), folders (images, labels),
      val: [{kind: bsds, split: val}]       #        hf (path, split, image_column, masks_column|label_map_column)
      resolution: 320              # scale 1 fits the longer image side to this
      crop_size: null              # random crops of this size (default: resolution)
      thickness: 2
      annotators: union            # union | soft (several annotators per image, BSDS)
      scale_range: [0.75, 1.5]
      hflip: true
      color_jitter: 0.3
    loss: {class_balance: none, max_pos_weight: 10.0, positive_threshold: 0.3, side_weight: 0.5}
                                   # class_balance: none | pos_weight | hed | rcf
    training: {max_steps: 4000, learning_rate: 1e-3, ...}   # any transformers.TrainingArguments field
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from ..segmentation.losses import supervised_loss
from ..segmentation.predictor import IMAGENET_MEAN, IMAGENET_STD
from .boundary_config import BOUNDARY_LABELS, BoundaryTrainingConfig, LossSection, ModelSection, load_config
from .boundary_data.dataset import BoundaryDataset
from .config import ConfigError, make_training_arguments, resolve_resume
from .loss_history import save_loss_history

# ------------------------------------------------------------------------------------------ model + loss


def build_model(section: ModelSection):
    """A one-label boundary model (SegFormer or EdgeNet), from scratch or from a checkpoint."""
    from transformers import SegformerForSemanticSegmentation

    if section.architecture == "edgenet":
        from ..segmentation.edgenet import EdgeNetForBoundaryDetection

        if section.pretrained is None:
            return EdgeNetForBoundaryDetection(section.scratch_config())
        return EdgeNetForBoundaryDetection.from_pretrained(
            section.pretrained, use_safetensors=True, **section.overrides
        )
    if section.pretrained is None:
        return SegformerForSemanticSegmentation(section.scratch_config())
    return SegformerForSemanticSegmentation.from_pretrained(
        section.pretrained,
        ignore_mismatched_sizes=True,
        use_safetensors=True,
        **section.overrides,
        **BOUNDARY_LABELS,
    )


def _trainer_class():
    from transformers import Trainer

    class BoundaryTrainer(Trainer):
        """``Trainer`` whose loss is ``supervised_loss``: ``boundary_loss`` on the logits plus ``side_weight`` times
        it on each side output of models that have them (the model only sees ``pixel_values``); an EdgeNet's
        ``forward(labels=...)`` computes the same loss, with the options kept in its config."""

        loss_is_scaled_for_ga = False  # a per-batch mean: the Trainer divides by the accumulation steps

        def __init__(self, *args, loss_section: LossSection, **kwargs):
            super().__init__(*args, **kwargs)
            self.loss_section = loss_section

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            outputs = model(pixel_values=inputs["pixel_values"])
            side_logits = getattr(outputs, "side_logits", None)  # deep supervision (EdgeNet)
            loss = supervised_loss(outputs.logits, side_logits, inputs["labels"], **asdict(self.loss_section))
            return (loss, outputs) if return_outputs else loss

        # transformers 5 saves SegFormer weights under their legacy names (as the public DirectSAM checkpoints)
        # but the Trainer reloads checkpoints with a plain ``load_state_dict``, which matches no key and silently
        # keeps the current weights. Load through ``from_pretrained``, which converts the names, instead.
        def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
            _load_weights(model if model is not None else self.model, resume_from_checkpoint)

        def _load_best_model(self):
            _load_weights(self.model, self.state.best_model_checkpoint)

    return BoundaryTrainer


def _load_weights(model: torch.nn.Module, checkpoint: str | os.PathLike) -> None:
    """Copy the weights of a saved checkpoint folder into ``model`` (all keys must match)."""
    loaded = type(model).from_pretrained(str(checkpoint), use_safetensors=True)
    model.load_state_dict(loaded.state_dict(), strict=True)


# ------------------------------------------------------------------------------------------------ train


def _training_arguments(config: BoundaryTrainingConfig, has_val: bool):

    defaults: dict[str, Any] = {
        "per_device_train_batch_size": 4,
        "per_device_eval_batch_size": 4,
        "learning_rate": 6e-5 if config.model.pretrained else 1e-3,
        "weight_decay": 0.01,
        "lr_scheduler_type": "cosine",
        "warmup_steps": 0,
        "max_grad_norm": 1.0,
        "logging_steps": 10,
        "save_strategy": "steps",
        "save_steps": 500,
        "save_total_limit": 2,
        "dataloader_num_workers": 0,
        "report_to": "none",
        "remove_unused_columns": False,
        "prediction_loss_only": True,
    }
    if has_val:
        defaults.update(eval_strategy="steps", eval_steps=500, metric_for_best_model="eval_loss")
    if not has_val and config.training.get("load_best_model_at_end"):
        raise ConfigError("training.load_best_model_at_end needs validation data (data.val)")
    return make_training_arguments(defaults, config.training, config.output_dir, config.seed)


def train_boundary(config: str | os.PathLike | dict) -> Path:
    """Train a boundary model as described by ``config`` (a YAML path or a dict); returns the output folder.

    Raises ``ConfigError`` (a ``ValueError``) with the offending key for a bad config, before any training.
    """
    from transformers import SegformerImageProcessor, set_seed

    config = load_config(config)
    if config.torch_threads:
        torch.set_num_threads(config.torch_threads)
    data = config.data
    args = _training_arguments(config, has_val=bool(data.val))
    resume = resolve_resume(config.resume_from_checkpoint, config.output_dir)

    train_items = [item for source in data.train for item in source.items()]
    val_items = [item for source in data.val for item in source.items()]
    global_batch = (
        args.per_device_train_batch_size * args.gradient_accumulation_steps * max(args.world_size, 1)
    )
    if args.max_steps <= 0:  # always count in steps: one (virtual) epoch covers the whole run
        args.max_steps = math.ceil(args.num_train_epochs * len(train_items) / global_batch)
    repeats = max(1, math.ceil(args.max_steps * global_batch / len(train_items)))
    common = {
        "thickness": data.thickness,
        "annotators": data.annotators,
        "image_mean": IMAGENET_MEAN,
        "image_std": IMAGENET_STD,
    }
    train_dataset = BoundaryDataset(
        train_items,
        data.resolution,
        augment=True,
        crop_size=data.crop_size,
        scale_range=data.scale_range,
        hflip=data.hflip,
        color_jitter=data.color_jitter,
        seed=config.seed,
        repeats=repeats,
        **common,
    )
    val_dataset = BoundaryDataset(val_items, data.resolution, **common) if val_items else None

    set_seed(config.seed)  # reproducible initialisation of a model built from scratch
    model = build_model(config.model)
    if hasattr(
        model.config, "loss"
    ):  # an EdgeNet keeps the loss it is trained with: forward(labels=) computes it
        model.config.loss = asdict(config.loss)
    processor = SegformerImageProcessor(
        size={"height": data.resolution, "width": data.resolution},
        do_reduce_labels=False,
        image_mean=list(IMAGENET_MEAN),
        image_std=list(IMAGENET_STD),
    )
    trainer = _trainer_class()(
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=val_dataset,
        processing_class=processor,
        loss_section=config.loss,
    )
    trainer.train(resume_from_checkpoint=resume)
    output_dir = Path(args.output_dir)
    trainer.save_model(str(output_dir))  # final model, or the best one with load_best_model_at_end
    if trainer.is_world_process_zero():
        save_loss_history(trainer.state.log_history, output_dir)
    return output_dir


__all__ = ["build_model", "train_boundary"]
