"""LoRA instruction tuning of SubobjectLlava with the Hugging Face ``Trainer`` + PEFT, from a YAML config.

>>> output_dir = train_vlm("configs/vlm_tiny_smoke.yaml")      # adapter + trained modules + processor
>>> merge_lora(output_dir, output_dir / "merged")              # a plain SubobjectLlava checkpoint

From a shell: ``subobject-vlm train --config X`` or ``python -m subobject_vlm.training.train_vlm --config X``
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
    training: {max_steps: 1000, learning_rate: 2e-4, ...}   # any transformers.TrainingArguments field
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..devices import DTYPES
from .config import (
    ConfigError,
    build_dataclass,
    check_trainer_section,
    load_yaml_config,
    make_training_arguments,
    resolve_resume,
)
from .train_boundary import plot_loss_curve
from .vlm_data import (
    SubobjectCollator,
    load_conversations,
    make_synthetic_shapes,
    precompute_segmentations,
    tokenize_conversations,
)

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
TRAINED_MODULES = ("multi_modal_projector", "image_boundary_embeddings")


# ------------------------------------------------------------------------------------------------ config


@dataclass
class ModelSection:
    """Exactly one of ``pretrained``, ``text_model`` + ``vision_model``, or ``tiny``."""

    pretrained: str | None = None
    text_model: str | None = None
    vision_model: str | None = None
    tiny: bool = False
    config_overrides: dict[str, Any] = field(default_factory=dict)
    dtype: str = "float32"
    chat_template: str | None = None
    train_vision_tower: bool = False

    def validate(self) -> None:
        built = self.text_model is not None or self.vision_model is not None
        if sum([self.pretrained is not None, built, bool(self.tiny)]) != 1:
            raise ConfigError(
                "model: set exactly one of 'pretrained', 'text_model' + 'vision_model', or 'tiny'"
            )
        if built and (self.text_model is None or self.vision_model is None):
            raise ConfigError("model: building a model needs both 'text_model' and 'vision_model'")
        if self.dtype not in DTYPES:
            raise ConfigError(f"model.dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")
        from ..configuration_subobject_llava import SubobjectLlavaConfig

        known = {f.name for f in dataclasses.fields(SubobjectLlavaConfig)}
        unknown = sorted(set(self.config_overrides) - known)
        if unknown:
            raise ConfigError(f"model.config_overrides: unknown SubobjectLlavaConfig fields {unknown}")


@dataclass
class LoraSection:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: list(LORA_TARGETS))
    modules_to_save: list[str] = field(default_factory=list)
    """Extra modules trained in full, e.g. ``lm_head`` for a random tiny model (whose head is too weak to learn
    through adapters alone); the embedding and start/end vectors always are."""

    def validate(self) -> None:
        if self.r < 1:
            raise ConfigError(f"lora.r must be >= 1, got {self.r}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"lora.dropout must be in [0, 1), got {self.dropout}")
        if not self.target_modules or not all(
            isinstance(t, str) and t.isidentifier() for t in self.target_modules
        ):
            raise ConfigError(
                f"lora.target_modules must be a list of module names, got {self.target_modules!r}"
            )


@dataclass
class DataSource:
    """``path`` (LLaVA .json/.jsonl, ``save_to_disk`` folder or dataset name) or ``synthetic`` options."""

    path: str | None = None
    image_folder: str | None = None
    split: str = "train"
    image_column: str = "image"
    conversations_column: str = "conversations"
    limit: int | None = None
    synthetic: dict[str, Any] | None = None

    def validate(self, where: str) -> None:
        if (self.path is None) == (self.synthetic is None):
            raise ConfigError(f"{where}: set exactly one of 'path' or 'synthetic'")
        if self.synthetic is not None:
            unknown = sorted(set(self.synthetic) - {"num_images", "size", "seed"})
            if unknown:
                raise ConfigError(
                    f"{where}.synthetic: unknown keys {unknown} (known: num_images, size, seed)"
                )
        if (
            self.path is not None
            and Path(self.path).suffix in (".json", ".jsonl")
            and not Path(self.path).is_file()
        ):
            raise ConfigError(f"{where}.path: conversation file {self.path} does not exist")
        if self.image_folder is not None and not Path(self.image_folder).is_dir():
            raise ConfigError(f"{where}.image_folder: {self.image_folder} is not a folder")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"{where}.limit must be >= 1, got {self.limit}")


@dataclass
class DataSection:
    train: DataSource
    val: DataSource | None = None
    max_length: int | None = 2048
    segment_batch_size: int = 16
    num_proc: int | None = None

    def validate(self) -> None:
        self.train.validate("data.train")
        if self.val is not None:
            self.val.validate("data.val")
        if self.max_length is not None and self.max_length < 8:
            raise ConfigError(f"data.max_length must be >= 8, got {self.max_length}")


@dataclass
class VLMTrainingConfig:
    output_dir: str
    data: DataSection
    model: ModelSection = field(default_factory=ModelSection)
    image_processor: dict[str, Any] = field(default_factory=dict)
    lora: LoraSection = field(default_factory=LoraSection)
    training: dict[str, Any] = field(default_factory=dict)
    merge: bool = False
    seed: int = 0
    torch_threads: int | None = None
    resume_from_checkpoint: bool | str | None = None

    def validate(self) -> None:

        from ..image_processing_subobject import SubobjectImageProcessor

        self.model.validate()
        self.lora.validate()
        self.data.validate()
        check_trainer_section(self.training, self.torch_threads)
        bad = sorted(set(self.image_processor) - set(SubobjectImageProcessor.valid_kwargs.__annotations__))
        if bad:
            raise ConfigError(f"image_processor: unknown SubobjectImageProcessor settings {bad}")


_NESTED = {
    (VLMTrainingConfig, "model"): ModelSection,
    (VLMTrainingConfig, "lora"): LoraSection,
    (VLMTrainingConfig, "data"): DataSection,
    (DataSection, "train"): DataSource,
    (DataSection, "val"): DataSource,
}


def _convert(cls, name: str, value: Any, path: str) -> Any:
    """Typed values of a VLM training config: the nested sections."""
    nested = _NESTED.get((cls, name))
    if nested is not None and value is not None:
        return build_dataclass(nested, value, path, _convert)
    return value


def load_config(config: str | os.PathLike | dict) -> VLMTrainingConfig:
    """A YAML file or a dict -> validated ``VLMTrainingConfig`` (``ConfigError`` on any problem)."""
    return load_yaml_config(config, VLMTrainingConfig, _convert)


# ------------------------------------------------------------------------------------------------- model


def _build_from_parts(section: ModelSection, dtype: torch.dtype):
    """A SubobjectLlava from a pretrained causal LM and vision model (new embedding initialised at random)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from ..configuration_subobject_llava import SubobjectLlavaConfig
    from ..modeling_subobject_llava import SubobjectLlavaForConditionalGeneration
    from ..processing_subobject_llava import add_image_token

    text_config = AutoConfig.from_pretrained(section.text_model)
    vision_config = AutoConfig.from_pretrained(section.vision_model)
    vision_config = (
        getattr(vision_config, "vision_config", None) or vision_config
    )  # CLIPConfig -> vision part
    tokenizer = AutoTokenizer.from_pretrained(section.text_model)
    config = SubobjectLlavaConfig(
        vision_config=vision_config, text_config=text_config, **section.config_overrides
    )
    add_image_token(tokenizer, config)
    model = SubobjectLlavaForConditionalGeneration(config).to(dtype)
    vision = type(model.model.vision_tower).from_pretrained(
        section.vision_model, dtype=dtype, use_safetensors=True
    )
    model.model.vision_tower.load_state_dict(vision.state_dict())
    text = AutoModelForCausalLM.from_pretrained(section.text_model, dtype=dtype, use_safetensors=True)
    model.model.language_model.load_state_dict(text.model.state_dict())
    model.lm_head.load_state_dict(text.lm_head.state_dict())
    model.tie_weights()
    return model, tokenizer


def _image_processor_for(section: ModelSection, base_processor, overrides: dict):
    """The ``SubobjectImageProcessor`` for training: the checkpoint's (or a new one), with ``overrides``."""
    from ..image_processing_subobject import SubobjectImageProcessor

    settings: dict[str, Any] = {}
    if base_processor is not None:
        settings = {
            k: v
            for k, v in base_processor.to_dict().items()
            if k in base_processor.valid_kwargs.__annotations__
        }
    elif section.vision_model is not None:
        from transformers import AutoImageProcessor

        source = AutoImageProcessor.from_pretrained(section.vision_model)
        crop = getattr(source, "crop_size", None) or source.size
        side = crop.get("height") or crop.get("shortest_edge")
        settings = {
            "size": {"height": side, "width": side},
            "label_size": {"height": side, "width": side},
            "image_mean": list(source.image_mean),
            "image_std": list(source.image_std),
        }
    elif section.tiny:
        settings = {
            "size": {"height": 32, "width": 32},
            "label_size": {"height": 32, "width": 32},
            "boundary_model": "gradient",
            "max_tokens": 16,
        }
    return SubobjectImageProcessor(**{**settings, **overrides})


def build_model_and_processor(config: VLMTrainingConfig):
    """(model, processor, base_saved_elsewhere): the model to adapt and its ``SubobjectLlavaProcessor``."""
    from transformers import AutoProcessor

    from ..modeling_subobject_llava import SubobjectLlavaForConditionalGeneration
    from ..processing_subobject_llava import DEFAULT_CHAT_TEMPLATE, SubobjectLlavaProcessor

    section = config.model
    dtype = DTYPES[section.dtype]
    base_processor = None
    if section.pretrained is not None:
        model = SubobjectLlavaForConditionalGeneration.from_pretrained(
            section.pretrained, dtype=dtype, use_safetensors=True
        )
        loaded = AutoProcessor.from_pretrained(section.pretrained)
        tokenizer, base_processor = loaded.tokenizer, loaded.image_processor
        chat_template = section.chat_template or loaded.chat_template
    elif section.tiny:
        from ..tiny import build_tiny_model, tiny_tokenizer

        tokenizer = tiny_tokenizer()
        model = build_tiny_model(tokenizer, **section.config_overrides).to(dtype)
        chat_template = section.chat_template or DEFAULT_CHAT_TEMPLATE
    else:
        model, tokenizer = _build_from_parts(section, dtype)
        chat_template = section.chat_template or DEFAULT_CHAT_TEMPLATE
    image_processor = _image_processor_for(section, base_processor, dict(config.image_processor))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    processor = SubobjectLlavaProcessor(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=chat_template
    )
    if processor.image_token_id != model.config.image_token_id:
        raise ConfigError(
            f"the tokenizer's image token id {processor.image_token_id} differs from the model's "
            f"image_token_id {model.config.image_token_id}"
        )
    vision = model.config.vision_config
    size = image_processor.size
    if (
        vision is not None
        and hasattr(vision, "image_size")
        and (size["height"], size["width"]) != (vision.image_size,) * 2
    ):
        raise ConfigError(
            f"image_processor.size {dict(size)} does not match the vision tower's image_size {vision.image_size}"
        )
    if (image_processor.max_tokens or 0) > model.config.max_tokens_per_image:
        raise ConfigError(
            f"image_processor.max_tokens={image_processor.max_tokens} exceeds the model's max_tokens_per_image="
            f"{model.config.max_tokens_per_image}"
        )
    return model, processor, section.pretrained is not None


def lora_config(section: LoraSection, train_vision_tower: bool = False):
    """PEFT ``LoraConfig``: adapters on ``language_model`` projections only; the embedding trained in full."""
    from peft import LoraConfig

    names = "|".join(section.target_modules)
    return LoraConfig(
        r=section.r,
        lora_alpha=section.alpha,
        lora_dropout=section.dropout,
        target_modules=rf".*\blanguage_model\..*\.({names})",
        modules_to_save=[
            *TRAINED_MODULES,
            *(["vision_tower"] if train_vision_tower else []),
            *section.modules_to_save,
        ],
    )


# ------------------------------------------------------------------------------------------------- data


def _conversations(source, output_dir: Path, name: str):
    if source.synthetic is not None:
        options = {"num_images": 32, "size": 64, "seed": 0, **source.synthetic}
        folder = (
            output_dir / "synthetic" / f"{name}-{options['num_images']}-{options['size']}-{options['seed']}"
        )
        path = folder / "data.json"
        if not path.exists():
            make_synthetic_shapes(folder, **options)
        return load_conversations(path, limit=source.limit)
    return load_conversations(
        source.path,
        source.image_folder,
        split=source.split,
        image_column=source.image_column,
        conversations_column=source.conversations_column,
        limit=source.limit,
    )


def prepare_dataset(source, processor, data: DataSection, output_dir: Path, name: str):
    """Conversations -> cached segmentations -> cached tokens (all under ``output_dir/preprocessed``)."""
    cache_dir = output_dir / "preprocessed"
    dataset = _conversations(source, output_dir, name)
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
        history = trainer.state.log_history
        (output_dir / "log_history.json").write_text(json.dumps(history, indent=1))
        plot_loss_curve(history, output_dir / "loss_curve.png")
        if config.merge:
            merge_lora(output_dir, output_dir / "merged")
    args.distributed_state.wait_for_everyone()
    return output_dir


def _base_model_path(adapter_dir: Path) -> str:
    settings = json.loads((adapter_dir / "adapter_config.json").read_text())
    base = settings.get("base_model_name_or_path")
    if base and Path(base).is_dir():
        return base
    if (adapter_dir / "base").is_dir():  # the output folder was moved: its own base/ copy
        return str(adapter_dir / "base")
    if base:
        return base  # a hub id
    raise ValueError(f"{adapter_dir}/adapter_config.json names no base model")


def load_adapted_model(adapter_dir: str | os.PathLike, dtype: torch.dtype | None = None):
    """The base SubobjectLlava with the trained adapters and modules of ``adapter_dir`` (not merged), eval mode."""
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    from .. import modeling_subobject_llava, processing_subobject_llava  # noqa: F401 - register the Auto classes

    adapter_dir = Path(adapter_dir)
    if not (adapter_dir / "adapter_config.json").is_file():
        raise ValueError(f"{adapter_dir} has no adapter_config.json: not a LoRA training output")
    base = AutoModelForImageTextToText.from_pretrained(
        _base_model_path(adapter_dir), dtype=dtype, use_safetensors=True
    )
    return PeftModel.from_pretrained(base, str(adapter_dir)).eval()


def merge_lora(
    adapter_dir: str | os.PathLike, out_dir: str | os.PathLike, dtype: torch.dtype | None = None
) -> Path:
    """Merge the LoRA adapters of ``adapter_dir`` into its base model; save model + processor to ``out_dir``.

    The result is a plain SubobjectLlava checkpoint (safetensors) loadable with
    ``AutoModelForImageTextToText.from_pretrained(out_dir)`` and ``AutoProcessor.from_pretrained(out_dir)``.
    """
    from transformers import AutoProcessor

    adapter_dir, out_dir = Path(adapter_dir), Path(out_dir)
    merged = load_adapted_model(adapter_dir, dtype).merge_and_unload()
    merged.save_pretrained(out_dir, safe_serialization=True)
    AutoProcessor.from_pretrained(adapter_dir).save_pretrained(out_dir)
    return out_dir


# -------------------------------------------------------------------------------------------------- CLI


__all__ = [
    "LORA_TARGETS",
    "ConfigError",
    "VLMTrainingConfig",
    "build_model_and_processor",
    "load_adapted_model",
    "load_config",
    "lora_config",
    "merge_lora",
    "prepare_dataset",
    "train_vlm",
]
