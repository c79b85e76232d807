"""YAML training configs as validated dataclasses: unknown, missing and malformed keys are named."""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
Convert = Callable[[type, str, Any, str], Any]


class ConfigError(ValueError):
    """A training config that cannot be used; the message names the offending key."""


def build_dataclass(cls: type[T], values: Any, where: str = "", convert: Convert | None = None) -> T:
    """Instantiate dataclass ``cls`` from a mapping, rejecting unknown and missing keys by name.

    ``convert(cls, name, value, path)`` may turn a raw value into its typed form (e.g. a nested section,
    built with ``build_dataclass`` again); ``path`` is the key's dotted location for error messages.
    """
    if not isinstance(values, dict):
        raise ConfigError(f"{where or 'config'} must be a mapping, got {type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"{where or 'config'}: unknown keys {unknown}; known keys: {sorted(fields)}")
    kwargs = {}
    for name, value in values.items():
        path = f"{where}.{name}" if where else name
        kwargs[name] = convert(cls, name, value, path) if convert is not None else value
    missing = sorted(
        name
        for name, f in fields.items()
        if name not in kwargs
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    )
    if missing:
        raise ConfigError(f"{where or 'config'}: missing required keys {missing}")
    return cls(**kwargs)


def read_yaml_mapping(path: str | os.PathLike) -> dict:
    """The YAML mapping in ``path``; ``ConfigError`` (one line) if it is missing, not YAML, or not a mapping."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(error).split())})") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path} is not a YAML mapping")
    return config


def load_yaml_config(config: str | os.PathLike | dict, cls: type[T], convert: Convert | None = None) -> T:
    """A YAML file or a dict -> ``cls`` instance, checked by its ``validate()`` (``ConfigError`` on problems)."""
    if not isinstance(config, dict):
        config = read_yaml_mapping(config)
    parsed = build_dataclass(cls, config, "", convert)
    parsed.validate()
    return parsed


def check_trainer_section(training: dict, torch_threads: int | None) -> None:
    """The ``training`` mapping must hold ``TrainingArguments`` fields only, minus the ones a config sets at its
    top level (``output_dir``, ``seed``, ``resume_from_checkpoint``); ``torch_threads`` must be positive."""
    from transformers import TrainingArguments

    known = {f.name for f in dataclasses.fields(TrainingArguments)}
    unknown = sorted(set(training) - known)
    if unknown:
        raise ConfigError(f"training: unknown TrainingArguments fields {unknown}")
    owned = sorted({"output_dir", "seed", "resume_from_checkpoint"} & set(training))
    if owned:
        raise ConfigError(f"training: set {owned} at the top level of the config, not under 'training'")
    if torch_threads is not None and torch_threads < 1:
        raise ConfigError(f"torch_threads must be >= 1, got {torch_threads}")


def make_training_arguments(defaults: dict, training: dict, output_dir: str, seed: int):
    """``TrainingArguments`` from a recipe's ``defaults`` overridden by the config's ``training`` section.

    Pinned memory is turned off where there is no GPU to pin for; invalid values raise ``ConfigError``.
    """
    import torch
    from transformers import TrainingArguments

    defaults = dict(defaults)
    if training.get("use_cpu") or not torch.cuda.is_available():
        defaults["dataloader_pin_memory"] = False
    try:
        return TrainingArguments(**{**defaults, **training, "output_dir": output_dir, "seed": seed})
    except (ValueError, TypeError) as error:
        raise ConfigError(f"training: {error}") from None


def last_complete_checkpoint(output_dir: str | os.PathLike) -> str | None:
    """The newest ``checkpoint-N`` folder of ``output_dir`` that was written completely, or ``None``.

    The Trainer writes ``trainer_state.json`` last (after weights, optimizer, scheduler and RNG states), so a
    checkpoint is complete when that file exists and parses; a run killed while saving leaves a newer folder
    without it, which is passed over.
    """
    import json

    folders = [
        p for p in Path(output_dir).glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()
    ]
    for folder in sorted(folders, key=lambda p: int(p.name.split("-")[-1]), reverse=True):
        try:
            json.loads((folder / "trainer_state.json").read_text())
        except (OSError, ValueError):
            continue
        return str(folder)
    return None


def resolve_resume(resume: bool | str | None, output_dir: str | os.PathLike) -> str | None:
    """``resume_from_checkpoint`` -> the checkpoint folder to resume from, or ``None``.

    ``None``/``False``: start afresh; ``"auto"``: the latest complete ``checkpoint-*`` in ``output_dir`` if any
    (see :func:`last_complete_checkpoint`); ``True``: that checkpoint, which must exist; a path: that folder.
    """
    if resume in (None, False):
        return None
    output_dir = Path(output_dir)
    last = last_complete_checkpoint(output_dir) if output_dir.is_dir() else None
    if resume == "auto":
        return last
    if resume is True:
        if last is None:
            raise ConfigError(f"resume_from_checkpoint: no complete checkpoint-* folder in {output_dir}")
        return last
    if not Path(resume).is_dir():
        raise ConfigError(f"resume_from_checkpoint: {resume} is not a folder")
    return str(resume)


def run_config_command(run: Callable[[Any], Path], path: str | os.PathLike, overrides: dict[str, Any]) -> int:
    """A command line's ``--config PATH`` plus its overriding options: read the YAML, set every ``overrides``
    value that is not ``None`` (dotted keys reach into sections, ``"training.steps"``), then
    :func:`run_training_command`. A missing or broken file is one line on stderr and exit status 2."""
    try:
        config = read_yaml_mapping(path)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for dotted, value in overrides.items():
        if value is None:
            continue
        *sections, key = dotted.split(".")
        target = config
        for section in sections:
            target = target.setdefault(section, {})
        target[key] = value
    return run_training_command(run, config)


def run_training_command(train: Callable[[Any], Path], config: Any) -> int:
    """Run ``train(config)`` for a command line: print the output folder and return 0, or print a config /
    data error (any ``ValueError``) as one line on stderr and return 2."""
    try:
        output_dir = train(config)
    except ValueError as error:  # ConfigError, DataError: one clear line, no traceback
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(output_dir)
    return 0


__all__ = [
    "ConfigError",
    "build_dataclass",
    "check_trainer_section",
    "last_complete_checkpoint",
    "load_yaml_config",
    "read_yaml_mapping",
    "make_training_arguments",
    "resolve_resume",
    "run_config_command",
    "run_training_command",
]
