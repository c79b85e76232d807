"""YAML training configs as validated dataclasses: unknown, missing and malformed keys are named."""

from __future__ import annotations

import dataclasses
import enum
import functools
import os
import re
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

T = TypeVar("T")
Convert = Callable[[type, str, Any, str], Any]


class ConfigError(ValueError):
    """A training config that cannot be used; the message names the offending key."""


class _Mismatch(Exception):
    """A value that does not have the type asked for (turned into a ``ConfigError`` by ``check_type``)."""


_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")  # what PyYAML leaves a string: 2e-4, 1E5
_NOUNS = {bool: "true or false", int: "an integer", float: "a number", str: "a string", type(None): "null"}


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (Union, types.UnionType)


def describe_type(annotation: Any) -> str:
    """A field type in the words of a YAML user: ``int | None`` -> ``"an integer or null"``."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation in _NOUNS:
        return _NOUNS[annotation]
    if _is_union(annotation):  # list[int] | tuple[int, ...] reads "a list of integers" once
        words = [describe_type(a) for a in sorted(args, key=lambda a: a is type(None))]
        return " or ".join(dict.fromkeys(words))
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if annotation is list or origin is list:
        if not args or args[0] is Any:
            return "a list"
        plural = {bool: "booleans", int: "integers", float: "numbers", str: "strings"}.get(args[0])
        return f"a list of {plural}" if plural else f"a list whose items are each {describe_type(args[0])}"
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return describe_type(list[args[0]])
    if origin is tuple and args and args[-1] is not Ellipsis:
        return f"a list of {len(args)} values [{', '.join(describe_type(a) for a in args)}]"
    if annotation is dict or origin is dict or dataclasses.is_dataclass(annotation):
        return "a mapping"
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return "one of " + ", ".join(repr(m.value) for m in annotation)
    return f"a {getattr(annotation, '__name__', annotation)}"


def _coerce(value: Any, annotation: Any) -> Any:
    """``value`` as ``annotation``: ints are accepted as floats, lists become tuples, numeric strings such as
    YAML's ``2e-4`` (a string to PyYAML) become floats; anything else of the wrong type raises ``_Mismatch``."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is Any or annotation is object:
        return value
    if _is_union(annotation):
        for arg in args:
            try:
                return _coerce(value, arg)
            except _Mismatch:
                pass
        raise _Mismatch
    if origin is Literal:
        if any(value == a and type(value) is type(a) for a in args):
            return value
        raise _Mismatch
    if annotation is type(None) or annotation is None:
        if value is None:
            return None
        raise _Mismatch
    if annotation is bool or annotation is str:
        if isinstance(value, annotation):
            return value
        raise _Mismatch
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _Mismatch
    if annotation is float:
        if isinstance(value, bool):
            raise _Mismatch
        if isinstance(value, int | float):
            return value  # an int stays an int: 3 is a fine number of epochs, and TrainingArguments keeps it
        if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
            return float(value)
        raise _Mismatch
    if annotation is list or origin is list:
        if not isinstance(value, list):
            raise _Mismatch
        return [_coerce(v, args[0]) for v in value] if args else value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise _Mismatch
        if not args or args[-1] is Ellipsis:
            return tuple(_coerce(v, args[0]) for v in value) if args else tuple(value)
        if len(value) != len(args):
            raise _Mismatch
        return tuple(_coerce(v, a) for v, a in zip(value, args))
    if annotation is dict or origin is dict:
        if not isinstance(value, dict):
            raise _Mismatch
        if not args:
            return value
        return {_coerce(k, args[0]): _coerce(v, args[1]) for k, v in value.items()}
    if isinstance(annotation, type):
        if isinstance(value, annotation):
            return value
        if issubclass(annotation, enum.Enum) and any(value == m.value for m in annotation):
            return value
        raise _Mismatch
    return value  # a typing construct no YAML value is checked against (a TypeVar, a Callable): accepted


@dataclasses.dataclass(frozen=True)
class Bounds:
    """The values a numeric config key may take: ``low <= value <= high`` (``None``: unbounded; ``open_low`` /
    ``open_high`` make a bound strict), a multiple of ``multiple_of`` if given. ``None`` always passes (the
    type decides whether it is allowed). Declared with :func:`bounded`, checked by ``build_dataclass``."""

    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    multiple_of: int | None = None

    def describe(self) -> str:
        """``">= 1"``, ``"in [0, 1)"``, ``"a multiple of 32 in [32, 4096]"``."""
        multiple = f"a multiple of {self.multiple_of} " if self.multiple_of else ""
        low, high = (f"{v:g}" if isinstance(v, float) else str(v) for v in (self.low, self.high))
        if self.high is None:
            return f"{multiple}{'>' if self.open_low else '>='} {low}"
        if self.low is None:
            return f"{multiple}{'<' if self.open_high else '<='} {high}"
        left, right = "(" if self.open_low else "[", ")" if self.open_high else "]"
        return f"{multiple}in {left}{low}, {high}{right}"

    def check(self, value: Any, path: str) -> None:
        """``ConfigError`` naming ``path``, the bounds and ``value`` when a number lies outside them."""
        if value is None or isinstance(value, bool) or not isinstance(value, int | float):
            return
        inside = (
            (self.low is None or (value > self.low if self.open_low else value >= self.low))
            and (self.high is None or (value < self.high if self.open_high else value <= self.high))
            and (self.multiple_of is None or value % self.multiple_of == 0)
        )
        if not inside:
            raise ConfigError(f"{path} must be {self.describe()}, got {value!r}")


def bounded(
    default: Any,
    low: float | None = None,
    high: float | None = None,
    *,
    open_low: bool = False,
    open_high: bool = False,
    multiple_of: int | None = None,
) -> Any:
    """A dataclass field with ``default`` whose values must lie within :class:`Bounds` (the one place a
    config states the range of a number): ``r: int = bounded(16, 1)``, ``dropout: float = bounded(0.05, 0, 1,
    open_high=True)``."""
    bounds = Bounds(low, high, open_low, open_high, multiple_of)
    return dataclasses.field(default=default, metadata={"bounds": bounds})


MAX_SEED = 2**32 - 1  # what numpy's and torch's generators accept


def check_type(value: Any, annotation: Any, path: str) -> Any:
    """``value`` checked against the dataclass field type ``annotation`` (and converted as ``_coerce`` does);
    ``ConfigError`` naming ``path`` and the expected type otherwise:
    ``lora.r must be an integer, got 'eight'``.

    ``bool`` is not accepted for ``int`` or ``float`` (YAML's ``yes``/``true`` are never numbers), ``None``
    only where the type allows it, an ``int`` is fine for a ``float``.
    """
    try:
        return _coerce(value, annotation)
    except _Mismatch:
        shown = repr(value)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        raise ConfigError(f"{path} must be {describe_type(annotation)}, got {shown}") from None


def _type_of(default: Any) -> Any:
    """The type a value must have, judged by a default without annotation: ``[16, 32]`` -> ``list[int]``,
    ``[1.0, 2]`` -> ``list[float]``; ``None`` -> anything."""
    if default is None:
        return Any
    if isinstance(default, list | tuple):
        kinds = {type(item) for item in default}
        item = float if kinds == {int, float} else kinds.pop() if len(kinds) == 1 else Any
        return list[item]
    return dict if isinstance(default, dict) else type(default)


def check_config_overrides(overrides: dict, config_class: type, where: str) -> None:
    """``overrides`` of a transformers config's fields (``SegformerConfig``, ``EdgeNetConfig``,
    ``SubobjectLlavaConfig``): known fields only, each value of its field's type (the annotation, else the type
    of its default, e.g. a list of integers), converted in place; ``ConfigError`` naming ``where.key``, the
    expected type and the value otherwise (``model.overrides.hidden_sizes must be a list of integers, ...``)."""
    import torch

    defaults = config_class().to_dict()
    unknown = sorted(set(overrides) - set(defaults))
    if unknown:
        raise ConfigError(f"{where}: unknown {config_class.__name__} fields {unknown}")
    hints = typing.get_type_hints(config_class, localns={"torch": torch})  # 'torch.dtype' annotations
    for key, value in overrides.items():
        annotation = hints.get(key, _type_of(defaults[key]))
        overrides[key] = check_type(value, annotation, f"{where}.{key}")


@functools.cache
def field_types(cls: type) -> dict[str, Any]:
    """The resolved field types of dataclass ``cls`` (string annotations evaluated)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(cls)}


def build_dataclass(cls: type[T], values: Any, where: str = "", convert: Convert | None = None) -> T:
    """Instantiate dataclass ``cls`` from a mapping, rejecting unknown and missing keys by name, values of
    the wrong type by name and expected type (``check_type`` against the field's annotation) and numbers
    outside their field's :class:`Bounds` (:func:`bounded`) by name and range.

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
    types_ = field_types(cls)
    for name, value in values.items():
        path = f"{where}.{name}" if where else name
        value = convert(cls, name, value, path) if convert is not None else value
        kwargs[name] = check_type(value, types_[name], path)
        bounds = fields[name].metadata.get("bounds")
        if bounds is not None:
            bounds.check(kwargs[name], path)
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


def check_trainer_section(training: dict) -> None:
    """The ``training`` mapping must hold ``TrainingArguments`` fields only, minus the ones a config sets at its
    top level (``output_dir``, ``seed``, ``resume_from_checkpoint``), each of its field's type
    (``check_type``, values converted in place)."""
    from transformers import TrainingArguments

    known = {f.name for f in dataclasses.fields(TrainingArguments)}
    unknown = sorted(set(training) - known)
    if unknown:
        raise ConfigError(f"training: unknown TrainingArguments fields {unknown}")
    owned = sorted({"output_dir", "seed", "resume_from_checkpoint"} & set(training))
    if owned:
        raise ConfigError(f"training: set {owned} at the top level of the config, not under 'training'")
    types_ = field_types(TrainingArguments)
    for name, value in training.items():  # in place: "2e-4" (a string to PyYAML) becomes 0.0002
        training[name] = check_type(value, types_[name], f"training.{name}")


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
    :func:`run_training_command`. A missing or broken file is a ``ConfigError`` (the command line prints it)."""
    config = read_yaml_mapping(path)
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
    """Run ``train(config)`` for a command line: print the output folder and return 0. A config or data error
    (any ``ValueError``) propagates: the command line prints it as one line and exits with 2."""
    output_dir = train(config)
    print(output_dir)
    return 0


__all__ = [
    "MAX_SEED",
    "Bounds",
    "ConfigError",
    "bounded",
    "build_dataclass",
    "check_config_overrides",
    "check_trainer_section",
    "check_type",
    "describe_type",
    "last_complete_checkpoint",
    "load_yaml_config",
    "read_yaml_mapping",
    "make_training_arguments",
    "resolve_resume",
    "run_config_command",
    "run_training_command",
]
