"""The comparison's YAML config: tokenizers, budgets, seeds, data, model and schedule, validated once.

The layout is in the package docstring (:mod:`subobject_vlm.evaluation.token_efficiency`). Your own data::

    data:
      train: {path: train.json, image_folder: images}   # relative paths: from the config file's folder
      val: {path: val.jsonl, image_folder: images}      # (output_dir: from the working directory)
      attribute_words: [red, blue, large, small, top, left]   # scored in captions: attribute_accuracy
      attribute_groups: {colour: [red, blue], size: [large, small], position: [top, left]}   # optional
      reference_words: [the]                            # optional; the default

Each record is LLaVA-format, with an optional ``task``: ``caption`` (the default) records give the caption loss
(``val_loss``, ``val_perplexity``) and ``attribute_accuracy``; any other ``task`` is a question, scored by exact
answer (``accuracy``, and ``accuracy_by_task`` per task name). Without question records ``accuracy`` is ``null``
in ``results.jsonl`` and ``n/a`` in ``results.md``::

    {"image": "0.png", "conversations": [{"from": "human", "value": "<image>\nDescribe the image."},
                                         {"from": "gpt", "value": "a red box at the top left ."}]}
    {"image": "0.png", "task": "colour", "conversations": [
        {"from": "human", "value": "<image>\nWhat colour is the box?"}, {"from": "gpt", "value": "red"}]}

``attribute_words`` are matched as the text tokenizer writes them (``red``, ``Ġred``, ``▁red``: any token that
is the word once spaces are stripped, ignoring case); a word the tokenizer splits into pieces is not scored
(a warning names it) and none matching is an error. ``attribute_accuracy`` counts every attribute word of a
caption except copies: a word the caption already said, repeated within two tokens after one of
``reference_words`` ("a red cube ... left of the red cube"). A word said for the first time always counts, so
"at the top left" keeps its position words. ``reference_words: []`` scores every repetition too.

``attribute_groups`` (group -> words) adds ``attribute_accuracy_by_group``: the same score over each group's
words (a group's words are scored in ``attribute_accuracy`` too). The built-in scenes have the groups count,
size, material, colour and shape unless ``attribute_words`` or ``attribute_groups`` is set. These three keys
and ``reference_tokenizer`` are evaluation settings: changing them re-evaluates the saved weights of each run
(``save_weights``) instead of training again.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ...caching import digest
from ...training.config import (
    ConfigError,
    build_dataclass,
    load_yaml_config,
    read_yaml_mapping,
)

VISION_NAMES = ("pixels", "cnn")
EVALUATION_DATA_KEYS = (
    "attribute_words",
    "attribute_groups",
    "reference_words",
)  # what is scored, not trained
# top-level keys without effect on a run's weights (see experiment_fingerprint)
NOT_FINGERPRINTED = (
    "output_dir",
    "seeds",
    "budgets",
    "tokenizers",
    "torch_threads",
    "reference_tokenizer",
    "save_weights",
)


@dataclass
class TrainingSection:
    steps: int = 400
    batch_size: int = 16
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 20
    max_grad_norm: float = 1.0
    eval_every: int = 50
    eval_batch_size: int = 32
    bf16: bool = False  # autocast to bfloat16 (GPU runs)

    def validate(self) -> None:
        for name in ("steps", "batch_size", "eval_every", "eval_batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"training.{name} must be a positive integer, got {value!r}")
        for name in ("learning_rate", "weight_decay", "max_grad_norm"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"training.{name} must be a non-negative number, got {value!r}")
        if not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise ConfigError(
                f"training.warmup_steps must be a non-negative integer, got {self.warmup_steps!r}"
            )


@dataclass
class ComparisonConfig:
    output_dir: str
    data: dict[str, Any]
    tokenizers: dict[str, dict[str, Any]]
    budgets: list[int] = field(default_factory=lambda: [16, 64])
    seeds: list[int] = field(default_factory=lambda: [0])
    image_size: int = 128
    label_size: int = 128
    model: dict[str, Any] = field(default_factory=lambda: {"vision": "pixels", "text": {}})
    training: TrainingSection = field(default_factory=TrainingSection)
    max_length: int | None = None
    torch_threads: int | None = (
        None  # None: 1 on the CPU (fast on a shared machine), torch's default on a GPU
    )
    device: str = "cpu"
    reference_tokenizer: str | None = None  # paired comparisons against it; None: every tokenizer named ours*
    save_weights: bool = True  # final weights per run in output_dir/weights: evaluation-only reruns

    def validate(self) -> None:
        from ...image_processing_subobject import SubobjectImageProcessor

        self.training.validate()
        if not self.tokenizers or not isinstance(self.tokenizers, dict):
            raise ConfigError("tokenizers: name at least one tokenizer (name -> processor settings)")
        known = set(SubobjectImageProcessor.valid_kwargs.__annotations__) - {"max_tokens", "label_size"}
        for name, spec in self.tokenizers.items():
            if not isinstance(spec, dict) or "boundary_model" not in spec:
                raise ConfigError(f"tokenizers.{name}: needs at least 'boundary_model' (e.g. default, patch)")
            unknown = sorted(set(spec) - known - {"match", "budgets"})
            if unknown:
                raise ConfigError(
                    f"tokenizers.{name}: unknown settings {unknown} (known: {sorted(known)}, match)"
                )
            own = spec.get("budgets")
            if own is not None and (
                not isinstance(own, list) or not own or not all(isinstance(b, int) and b >= 1 for b in own)
            ):
                raise ConfigError(
                    f"tokenizers.{name}.budgets must be a non-empty list of positive integers, got {own!r}"
                )
            match = spec.get("match")
            if match is not None and own is not None:
                raise ConfigError(
                    f"tokenizers.{name}: a matched baseline takes the budgets of {match!r}, not its own"
                )
            if match is not None and (match not in self.tokenizers or self.tokenizers[match].get("match")):
                raise ConfigError(
                    f"tokenizers.{name}.match: {match!r} must name another tokenizer without 'match'"
                )
            if match is not None and not _is_label_map_tokenizer(spec["boundary_model"]):
                from ...segmentation.registry import LABEL_MAP, family_names, registered_names

                exact = registered_names(LABEL_MAP, families=False)
                raise ConfigError(
                    f"tokenizers.{name}.match: only label-map tokenizers ({', '.join(exact)}: exact counts; "
                    f"{', '.join(family_names(LABEL_MAP))}: at most) take another's per-image counts, "
                    f"not {spec['boundary_model']!r}"
                )
        for key in ("budgets", "seeds"):
            values = getattr(self, key)
            if not isinstance(values, list) or not values or not all(isinstance(v, int) for v in values):
                raise ConfigError(f"{key} must be a non-empty list of integers, got {values!r}")
        if min(self.budgets) < 1:
            raise ConfigError(f"budgets must be positive, got {self.budgets}")
        for key in ("image_size", "label_size"):
            if not isinstance(getattr(self, key), int) or getattr(self, key) < 8:
                raise ConfigError(f"{key} must be an integer >= 8, got {getattr(self, key)!r}")
        _check_data_section(self.data)
        _check_model_section(self.model)
        if self.torch_threads is not None and (
            not isinstance(self.torch_threads, int)
            or isinstance(self.torch_threads, bool)
            or self.torch_threads < 1
        ):
            raise ConfigError(f"torch_threads must be an integer >= 1, got {self.torch_threads!r}")
        if self.reference_tokenizer is not None and self.reference_tokenizer not in self.tokenizers:
            raise ConfigError(
                f"reference_tokenizer: {self.reference_tokenizer!r} is not one of the tokenizers "
                f"{sorted(self.tokenizers)}"
            )
        if not isinstance(self.save_weights, bool):
            raise ConfigError(f"save_weights must be true or false, got {self.save_weights!r}")
        from ...devices import check_device

        try:
            check_device(self.device)
        except ValueError as error:
            raise ConfigError(f"device: {error}") from None


def _is_label_map_tokenizer(name: Any) -> bool:
    """Whether ``name`` is a registered label-map tokenizer (a baseline, or a mask family's ``kind:checkpoint``)."""
    from ...segmentation.registry import LABEL_MAP, registry_entry

    entry = registry_entry(name) if isinstance(name, str) else None
    return entry is not None and entry.kind == LABEL_MAP


def _check_data_section(data: dict) -> None:
    if not isinstance(data, dict) or ("synthetic" in data) == ("train" in data):
        raise ConfigError("data: set either 'synthetic' or 'train' (+ 'val')")
    for key in ("attribute_words", "reference_words"):
        words = data.get(key, [])
        if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
            raise ConfigError(f"data.{key} must be a list of words, got {words!r}")
    groups = data.get("attribute_groups", {})
    if not isinstance(groups, dict) or not all(
        isinstance(words, list) and words and all(isinstance(w, str) for w in words)
        for words in groups.values()
    ):
        raise ConfigError(
            f"data.attribute_groups must map each group to a non-empty list of words, got {groups!r}"
        )
    data = {k: v for k, v in data.items() if k not in EVALUATION_DATA_KEYS}
    if "synthetic" in data:
        unknown = sorted(set(data) - {"synthetic"}) + sorted(
            set(data["synthetic"]) - {"train", "val", "size", "seed", "min_objects", "max_objects"}
        )
        if unknown:
            raise ConfigError(f"data.synthetic: unknown keys {unknown}")
        return
    if sorted(set(data) - {"train", "val"}) or "val" not in data:
        raise ConfigError("data: a user dataset needs exactly 'train' and 'val' sources")
    for split in ("train", "val"):
        source = data[split]
        if not isinstance(source, dict) or "path" not in source:
            raise ConfigError(
                f"data.{split}: needs a 'path' (LLaVA .json/.jsonl, save_to_disk folder or dataset)"
            )
        unknown = sorted(set(source) - {"path", "image_folder", "split", "limit"})
        if unknown:
            raise ConfigError(f"data.{split}: unknown keys {unknown}")


def _check_model_section(model: dict) -> None:
    if not isinstance(model, dict) or sorted(
        set(model) - {"vision", "text", "projector_depth", "shape_resolution"}
    ):
        raise ConfigError("model: keys are vision, text, projector_depth, shape_resolution")
    vision = model.get("vision", "pixels")
    if isinstance(vision, str):
        if vision not in VISION_NAMES:
            raise ConfigError(
                f"model.vision must be one of {VISION_NAMES} or {{timm: ...}} / {{hf: ...}}, got {vision!r}"
            )
    elif not (isinstance(vision, dict) and len({"timm", "hf"} & set(vision)) == 1):
        raise ConfigError(f"model.vision: a mapping needs exactly one of 'timm' or 'hf', got {vision!r}")
    text = model.get("text", {})
    if not isinstance(text, dict):
        raise ConfigError(f"model.text must be a mapping, got {text!r}")


def _convert(cls, name: str, value: Any, path: str) -> Any:
    if cls is ComparisonConfig and name == "training":
        return build_dataclass(TrainingSection, value or {}, path)
    return value


def load_config(
    config: str | os.PathLike | dict, base_dir: str | os.PathLike | None = None
) -> ComparisonConfig:
    """A YAML file or a dict -> validated :class:`ComparisonConfig` (``ConfigError`` naming the key).

    Relative ``data.<split>.path`` and ``image_folder`` are taken from ``base_dir`` (default: the YAML file's
    folder, or the working directory for a dict); a ``path`` with nothing there stays as written (a dataset
    name on the Hub), except a missing ``.json`` / ``.jsonl`` file: a ``ConfigError`` naming its key. So is a
    tokenizer's relative checkpoint folder (``boundary_model: ckpt`` or ``sam:ckpt``, see
    :func:`_resolve_checkpoints`)."""
    if not isinstance(config, dict):
        base_dir = Path(config).parent if base_dir is None else base_dir
        config = read_yaml_mapping(config)
    base = Path.cwd() if base_dir is None else Path(base_dir)
    if isinstance(config.get("tokenizers"), dict):
        config = {**config, "tokenizers": _resolve_checkpoints(config["tokenizers"], base)}
    parsed = load_yaml_config(config, ComparisonConfig, _convert)
    if "synthetic" not in parsed.data:
        parsed.data = _resolve_data_paths(parsed.data, base)
    return parsed


def _resolve_checkpoints(tokenizers: dict, base_dir: Path) -> dict:
    """A copy of ``tokenizers`` whose relative checkpoint folders (``boundary_model: folder`` or
    ``family:folder``) that exist under ``base_dir`` are absolute. A family's relative checkpoint found nowhere
    that is not a hub id (``owner/name``) is a ``ConfigError`` naming the key; other names stay as written."""
    from ...segmentation.registry import HUB_PREFIX, is_hub_id, registry_entry

    resolved = {}
    for name, spec in tokenizers.items():
        model = spec.get("boundary_model") if isinstance(spec, dict) else None
        if not isinstance(model, str) or model.startswith(HUB_PREFIX):
            resolved[name] = spec
            continue
        entry = registry_entry(model)
        if entry is not None and not entry.family:  # default, patch, slic, ... or a registered name
            resolved[name] = spec
            continue
        prefix, checkpoint = model.partition(":")[::2] if entry is not None else ("", model)
        path = Path(checkpoint).expanduser()
        if checkpoint.startswith(HUB_PREFIX) or path.is_absolute():
            resolved[name] = spec
        elif (base_dir / path).exists():
            folder = str((base_dir / path).resolve())
            resolved[name] = {**spec, "boundary_model": f"{prefix}:{folder}" if prefix else folder}
        elif entry is not None and not is_hub_id(checkpoint):
            raise ConfigError(
                f"tokenizers.{name}.boundary_model: no checkpoint folder {str(base_dir / path)!r} (relative "
                f"paths are taken from the config's folder) and {checkpoint!r} is not a hub id (owner/name)"
            )
        else:
            resolved[name] = spec
    return resolved


def _resolve_data_paths(data: dict, base_dir: Path) -> dict:
    """A copy of ``data`` with its splits' paths absolute from ``base_dir`` (see :func:`load_config`)."""
    data = dict(data)
    for split in ("train", "val"):
        source = data[split] = dict(data[split])
        path = base_dir / source["path"]
        if path.exists():
            source["path"] = str(path.resolve())
        elif Path(source["path"]).suffix in (".json", ".jsonl"):
            raise ConfigError(
                f"data.{split}.path: no such file {str(path)!r} (relative paths are taken from the config's folder)"
            )
        if source.get("image_folder"):
            source["image_folder"] = str((base_dir / source["image_folder"]).resolve())
    return data


def settings_digest(*parts: Any) -> str:
    """The experiment's 12-character keys of settings (``results.jsonl`` holds them: their form stays)."""
    return digest(parts, digest_size=6)


def experiment_fingerprint(config: ComparisonConfig) -> str:
    """What decides a run's weights besides its tokenizer, budget and seed: data, sizes, model and training
    (not the evaluation settings, the grid, threads or where outputs go). Runs with equal fingerprints belong
    to one experiment, whichever invocation or machine ran them."""
    values = {key: value for key, value in asdict(config).items() if key not in NOT_FINGERPRINTED}
    values["data"] = {key: value for key, value in config.data.items() if key not in EVALUATION_DATA_KEYS}
    return settings_digest(values)


def evaluation_key(data: dict) -> str:
    """The key of the evaluation settings in ``data`` (attribute words, groups, reference words): a run
    evaluated with other ones is evaluated again (from its saved weights)."""
    return settings_digest({key: data.get(key) for key in EVALUATION_DATA_KEYS})


DEFAULT_EVALUATION_KEY = evaluation_key({})  # also the key of records written before keys existed


def budgets_of(config: ComparisonConfig, name: str) -> list[int]:
    """A tokenizer's budgets: its own ``budgets`` (e.g. ``[1]`` for an almost image-blind reference), those of
    the tokenizer it matches, or the config's."""
    spec = config.tokenizers[name]
    source = config.tokenizers[spec["match"]] if spec.get("match") else spec
    return list(source.get("budgets") or config.budgets)
