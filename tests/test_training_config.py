"""Training configs: one loader for both recipes, every problem named."""

import json
from dataclasses import dataclass, field

import pytest

from subobject_vlm.training.config import (
    ConfigError,
    build_dataclass,
    check_trainer_section,
    load_yaml_config,
)


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


@dataclass
class Typed:
    count: int = 1
    rate: float = 0.5
    flag: bool = False
    name: str = "x"
    maybe: int | None = None
    span: tuple[float, float] = (0.0, 1.0)
    names: list[str] = field(default_factory=list)


@pytest.mark.parametrize(
    "values, message",
    [
        ({"count": "eight"}, "count must be an integer, got 'eight'"),
        ({"count": True}, "count must be an integer, got True"),  # YAML true/yes is never a number
        ({"count": 8.0}, "count must be an integer, got 8.0"),
        ({"count": None}, "count must be an integer, got None"),  # null where the type has no None
        ({"rate": "fast"}, "rate must be a number, got 'fast'"),
        ({"rate": False}, "rate must be a number, got False"),
        ({"flag": "yes"}, "flag must be true or false, got 'yes'"),
        ({"flag": 1}, "flag must be true or false, got 1"),
        ({"name": 3}, "name must be a string, got 3"),
        ({"maybe": "3"}, "maybe must be an integer or null, got '3'"),
        ({"span": [1, "a"]}, r"span must be a list of 2 values \[a number, a number\], got \[1, 'a'\]"),
        ({"span": [1, 2, 3]}, "span must be a list of 2 values"),
        ({"names": "a"}, "names must be a list of strings, got 'a'"),
        ({"names": ["a", 2]}, "names must be a list of strings"),
    ],
)
def test_values_of_the_wrong_type_are_named_with_the_expected_type(values, message):
    with pytest.raises(ConfigError, match=message):
        build_dataclass(Typed, values)


def test_yaml_values_are_accepted_where_the_type_allows():
    typed = build_dataclass(Typed, {"rate": 1, "maybe": None, "span": [1, 2.5]})
    assert typed.rate == 1  # an int is fine for a float
    assert typed.span == (1, 2.5) and isinstance(typed.span, tuple)  # a YAML list for a tuple
    assert build_dataclass(Typed, {"rate": "2e-4"}).rate == 2e-4  # PyYAML reads 2e-4 (no dot) as a string


def write_config(tmp_path, name: str, change) -> str:
    import yaml
    from conftest import REPO_ROOT

    config = yaml.safe_load((REPO_ROOT / "configs" / name).read_text())
    config["output_dir"] = str(tmp_path / "out")
    change(config)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def set_key(dotted: str, value):
    def change(config):
        *sections, key = dotted.split(".")
        for section in sections:
            config = config.setdefault(section, {})
        config[key] = value

    return change


@pytest.mark.parametrize(
    "command, recipe, key, value, message",
    [
        ("train", "vlm_tiny_smoke.yaml", "lora.r", "eight", "lora.r must be an integer, got 'eight'"),
        (
            "train",
            "vlm_tiny_smoke.yaml",
            "training.learning_rate",
            "fast",
            "training.learning_rate must be a number",
        ),
        ("train", "vlm_tiny_smoke.yaml", "seed", "abc", "seed must be an integer, got 'abc'"),
        ("train", "vlm_tiny_smoke.yaml", "lora.r", True, "lora.r must be an integer, got True"),
        ("train", "vlm_tiny_smoke.yaml", "lora.dropout", None, "lora.dropout must be a number, got None"),
        ("train", "vlm_tiny_smoke.yaml", "merge", "no", "merge must be true or false, got 'no'"),
        ("train", "vlm_tiny_smoke.yaml", "training.max_steps", 2.5, "training.max_steps must be an integer"),
        ("train", "vlm_tiny_smoke.yaml", "model.tiny", "true", "model.tiny must be true or false"),
        (
            "train",
            "vlm_tiny_smoke.yaml",
            "data.max_length",
            "64",
            "data.max_length must be an integer or null",
        ),
        (
            "train",
            "vlm_tiny_smoke.yaml",
            "image_processor.max_tokens",
            "many",
            "image_processor.max_tokens must be an integer or null, got 'many'",
        ),
        (
            "train-boundary",
            "boundary_tiny_smoke.yaml",
            "data.resolution",
            "64",
            "data.resolution must be an integer, got '64'",
        ),
        (
            "train-boundary",
            "boundary_tiny_smoke.yaml",
            "data.scale_range",
            [1, "x"],
            "data.scale_range must be a list of 2 values",
        ),
        (
            "train-boundary",
            "boundary_tiny_smoke.yaml",
            "loss.side_weight",
            "half",
            "loss.side_weight must be a number",
        ),
        ("train-boundary", "boundary_tiny_smoke.yaml", "seed", None, "seed must be an integer, got None"),
    ],
)
def test_training_commands_name_the_key_and_type_of_a_wrong_value_in_one_line(
    command, recipe, key, value, message, tmp_path, capsys
):
    from subobject_vlm.cli import main

    assert main([command, "--config", write_config(tmp_path, recipe, set_key(key, value))]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "out").exists()  # refused before anything is written


BOUNDARY, VLM = ("train-boundary", "boundary_tiny_smoke.yaml"), ("train", "vlm_tiny_smoke.yaml")


@pytest.mark.parametrize(
    "recipe, changes, message",
    [
        (
            BOUNDARY,
            {"data.resolution": 100000},  # tried to allocate 28 GiB
            "data.resolution must be a multiple of 32 in [32, 4096], got 100000",
        ),
        (BOUNDARY, {"data.thickness": 10**6}, "data.thickness must be in [1, 64], got 1000000"),
        (
            BOUNDARY,
            {"data.scale_range": [0.5, 100]},
            "data.scale_range must be [low, high] with 0 < low <= high <= 8",
        ),
        (
            BOUNDARY,
            {"model.overrides.hidden_sizes": [8]},  # the recipe's SegFormer has 2 encoder blocks
            "model.overrides.hidden_sizes must be 2 positive integers (one per encoder block",
        ),
        (
            BOUNDARY,
            {"model.overrides.hidden_sizes": "abc"},
            "model.overrides.hidden_sizes must be a list of integers, got 'abc'",
        ),
        (
            BOUNDARY,
            {"model.overrides.hidden_sizes": [8, 6], "model.overrides.num_attention_heads": [1, 4]},
            "model.overrides: hidden_sizes[1] = 6 is not a multiple of num_attention_heads[1] = 4",
        ),
        (VLM, {"lora.r": -1}, "lora.r must be >= 1, got -1"),
        (VLM, {"lora.r": 1.5}, "lora.r must be an integer, got 1.5"),
        (VLM, {"lora.alpha": 0}, "lora.alpha must be >= 1, got 0"),
        (VLM, {"seed": -1}, "seed must be in [0, 4294967295], got -1"),
        (
            VLM,
            {"model.config_overrides.shape_resolution": "x"},
            "model.config_overrides.shape_resolution must be an integer, got 'x'",
        ),
        (
            VLM,
            {"image_processor.size": {"height": 1, "width": 1}},
            "image_processor: size must be {'height': h, 'width': w} with whole numbers of pixels >= 2",
        ),
    ],
)
def test_a_value_out_of_its_range_is_refused_in_one_line_before_anything_is_built(
    recipe, changes, message, tmp_path, capsys
):
    from subobject_vlm.cli import main

    command, name = recipe

    def change(config):
        for key, value in changes.items():
            set_key(key, value)(config)

    assert main([command, "--config", write_config(tmp_path, name, change)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "out").exists()


def test_invalid_yaml_in_train_is_one_line_and_exit_status_2(tmp_path, capsys):
    from subobject_vlm.cli import main

    broken = tmp_path / "broken.yaml"
    broken.write_text("lora: {r: [8,\n")
    assert main(["train", "--config", str(broken)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not valid YAML" in err


@pytest.mark.parametrize("name", ["vlm", "boundary"])
def test_every_shipped_config_passes_the_type_checks(name):
    import importlib

    import yaml
    from conftest import REPO_ROOT

    module = importlib.import_module(f"subobject_vlm.training.{name}_config")
    cls = module.VLMTrainingConfig if name == "vlm" else module.BoundaryTrainingConfig
    recipes = [p for p in sorted((REPO_ROOT / "configs").glob("*.yaml")) if p.name.startswith(name)]
    assert recipes
    for recipe in recipes:  # types only: the data folders of the GPU recipes need not exist here
        config = build_dataclass(cls, yaml.safe_load(recipe.read_text()), "", module._convert)
        check_trainer_section(config.training)
