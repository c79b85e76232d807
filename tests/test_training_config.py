"""Training configs: one loader for both recipes, every problem named."""

import json
from dataclasses import dataclass, field

import pytest

from subobject_vlm.training.config import ConfigError, build_dataclass, load_yaml_config


@dataclass
class Inner:
    size: int


@dataclass
class Outer:
    inner: Inner
    name: str = "x"
    tags: list = field(default_factory=list)

    def validate(self) -> None:
        if self.inner.size < 0:
            raise ConfigError("inner.size must be >= 0")


def convert(cls, name, value, path):
    return build_dataclass(Inner, value, path, convert) if (cls, name) == (Outer, "inner") else value


def test_nested_sections_are_built_and_validated():
    assert load_yaml_config({"inner": {"size": 3}}, Outer, convert).inner.size == 3
    with pytest.raises(ConfigError, match="inner.size must be >= 0"):
        load_yaml_config({"inner": {"size": -1}}, Outer, convert)


@pytest.mark.parametrize(
    "values, message",
    [
        ({"inner": {"size": 1}, "nmae": "y"}, r"unknown keys \['nmae'\]"),
        ({"name": "y"}, r"missing required keys \['inner'\]"),
        ({"inner": {"sise": 1}}, r"inner: unknown keys \['sise'\]"),
        ({"inner": [1]}, "inner must be a mapping"),
    ],
)
def test_unknown_missing_and_malformed_keys_are_named(values, message):
    with pytest.raises(ConfigError, match=message):
        load_yaml_config(values, Outer, convert)


def test_broken_yaml_and_missing_files_are_reported(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("inner: {size: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_yaml_config(broken, Outer, convert)
    with pytest.raises(ConfigError, match="does not exist"):
        load_yaml_config(tmp_path / "missing.yaml", Outer, convert)


def test_auto_resume_passes_over_a_checkpoint_killed_while_saving(tmp_path):
    from subobject_vlm.training.config import resolve_resume

    for step, complete in (
        (4, True),
        (8, True),
        (12, False),
    ):  # checkpoint-12: killed before trainer_state.json
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"weights")
        if complete:
            (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    (tmp_path / "checkpoint-10").mkdir()
    (tmp_path / "checkpoint-10" / "trainer_state.json").write_text('{"global_st')  # torn while written
    assert resolve_resume("auto", tmp_path) == str(tmp_path / "checkpoint-8")
    assert resolve_resume(True, tmp_path) == str(tmp_path / "checkpoint-8")
    assert resolve_resume("auto", tmp_path / "empty") is None
