"""One option surface: every command that segments takes the same tokenizer options (one flag, help text, default
and set of choices each), they become ``SegmentationSettings`` once, and the token budget is ``max_tokens``
everywhere, checked once."""

import argparse

import numpy as np
import pytest

from subobject_vlm.commands import build_parser
from subobject_vlm.segmentation import SegmentationSettings, segment, segment_image
from subobject_vlm.segmentation.baselines import patch_grid
from subobject_vlm.segmentation.settings import ASSIGN_MODES, DEFAULT_MAX_TOKENS, MERGE_ORDERS, SEED_MODES

SEGMENTING = ("segment", "precompute", "eval-bsds")
TOKENIZER_FLAGS = (
    "--model",
    "--resolution",
    "--keep-aspect",
    "--pyramid-layers",
    "--device",
    "--dtype",
    "--model-option",
    "--max-tokens",
    "--threshold",
    "--min-area",
    "--merge",
    "--assign",
    "--seeds",
)


def options_of(command: str) -> dict[str, argparse.Action]:
    parser = build_parser()._subparsers._group_actions[0].choices[command]
    return {flag: action for action in parser._actions for flag in action.option_strings}


def test_every_segmenting_command_takes_each_tokenizer_option_with_one_help_and_one_default():
    commands = {name: options_of(name) for name in SEGMENTING}
    for flag in TOKENIZER_FLAGS:
        actions = [commands[name].get(flag) for name in SEGMENTING]
        assert all(actions), (flag, [name for name, a in zip(SEGMENTING, actions) if a is None])
        if flag != "--max-tokens":  # (eval-bsds sweeps the budget: several values, and a default list)
            assert len({(a.help, a.default, a.dest) for a in actions}) == 1, flag
    boundary = options_of("boundary")
    assert all(flag in boundary for flag in TOKENIZER_FLAGS[:6]) and "--max-tokens" not in boundary


def test_the_choices_of_every_command_are_the_settings_own():
    for name in SEGMENTING:
        options = options_of(name)
        assert tuple(options["--merge"].choices) == MERGE_ORDERS
        assert tuple(options["--assign"].choices) == ASSIGN_MODES
        assert tuple(options["--seeds"].choices) == SEED_MODES


def test_the_old_spellings_merge_order_and_budgets_still_parse():
    parser = build_parser()
    args = parser.parse_args(["precompute", "in", "--out", "o", "--merge-order", "smallest_region"])
    assert SegmentationSettings.from_args(args).merge == "smallest_region"
    assert parser.parse_args(["eval-bsds", "--budgets", "8", "16"]).max_tokens == [8, 16]


def test_options_not_given_keep_the_base_settings():
    base = SegmentationSettings("patch", {"resolution": 64}, max_tokens=9, seeds="threshold")
    args = build_parser().parse_args(["segment", "a.png", "--out", "o", "--min-area", "5", "--device", "cpu"])
    settings = SegmentationSettings.from_args(args, base=base)
    assert settings == SegmentationSettings(
        "patch", {"resolution": 64, "device": "cpu"}, max_tokens=9, seeds="threshold", min_area=5
    )
    assert SegmentationSettings.from_args(build_parser().parse_args(["segment", "a.png", "--out", "o"])) == (
        SegmentationSettings()
    )


def test_segment_and_the_baselines_default_to_the_one_default_budget(astronaut):
    small = astronaut[::4, ::4]  # 360 regions without a cap
    assert segment(small, "gradient").max() + 1 == DEFAULT_MAX_TOKENS
    assert patch_grid(64, 64).max() + 1 == DEFAULT_MAX_TOKENS


def test_segment_takes_num_tokens_only_as_the_deprecated_name_of_max_tokens(astronaut):
    small = astronaut[::8, ::8]
    with pytest.warns(DeprecationWarning, match="max_tokens"):
        old = segment(small, "patch", num_tokens=12)
    np.testing.assert_array_equal(old, segment(small, "patch", max_tokens=12))


def test_segment_image_checks_max_tokens_once_in_the_settings(monkeypatch, astronaut):
    import subobject_vlm.segmentation.baselines as baselines
    import subobject_vlm.segmentation.options as options
    import subobject_vlm.segmentation.regions as regions
    import subobject_vlm.segmentation.settings as settings_module

    calls = []
    check = options.check_max_tokens
    for module in (options, settings_module, regions, baselines):
        monkeypatch.setattr(module, "check_max_tokens", lambda value: (calls.append(value), check(value))[1])
    settings = SegmentationSettings("gradient", max_tokens=8, min_area=4)
    assert calls == [8]
    probs = np.random.default_rng(0).random((32, 32)).astype(np.float32)
    assert segment_image(None, settings, boundary_probs=probs).max() + 1 <= 8
    assert calls == [8]  # EPOC and its merge trust the settings
