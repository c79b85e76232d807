"""A lazy start: importing the package or asking for help loads nothing heavy; Auto registration still happens."""

import subprocess
import sys

import pytest


def run_python(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-W", "error::UserWarning", "-c", code], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_importing_the_package_loads_neither_torch_nor_transformers():
    assert run_python(
        "import sys, subobject_vlm; print('torch' in sys.modules, 'transformers' in sys.modules)"
    ) == ("False False")


def test_epoc_needs_numpy_and_opencv_only():
    code = (
        "import sys, numpy as np; from subobject_vlm import epoc\n"
        "labels = epoc(np.zeros((8, 8), np.float32)); print(labels.max(), 'torch' in sys.modules)"
    )
    assert run_python(code) == "0 False"


@pytest.mark.parametrize(
    "order",
    [
        "import subobject_vlm\nimport transformers",  # registered when transformers loads
        "import transformers\nimport subobject_vlm",  # registered at once
        "from subobject_vlm import SubobjectLlavaConfig",  # our module is the first to import transformers
        "import subobject_vlm.segmentation.edgenet",  # ... in a subpackage
        "import subobject_vlm.training.vlm_model",  # ... imported by another of ours
        "import subobject_vlm.cli as cli\ncli.build_parser()",
    ],
)
def test_every_import_order_registers_the_auto_classes_and_leaves_no_import_hook(order):
    code = (
        f"{order}\n"
        "import sys\n"
        "from transformers.models.auto.configuration_auto import CONFIG_MAPPING\n"
        "from transformers.models.auto import processing_auto, image_processing_auto, modeling_auto\n"
        "config = CONFIG_MAPPING['subobject_llava']\n"
        "print('subobject_edgenet' in CONFIG_MAPPING, config in processing_auto.PROCESSOR_MAPPING,\n"
        "      config in image_processing_auto.IMAGE_PROCESSOR_MAPPING,\n"
        "      config in modeling_auto.MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING,\n"
        "      [type(f).__module__ for f in sys.meta_path if type(f).__module__.startswith('subobject_vlm')])"
    )
    assert run_python(code) == "True True True True []"


def test_exported_functions_win_over_same_named_submodules():
    from subobject_vlm.segmentation import epoc
    from subobject_vlm.segmentation.epoc import SEED_MODES  # importing the submodule ...
    from subobject_vlm.training import train_boundary

    assert callable(epoc) and SEED_MODES and callable(train_boundary)  # ... does not hide the function


def test_help_loads_no_torch_and_lists_every_command_with_its_defaults():
    # not even numpy (0.14 s of the 0.25 s --help took here): the commands import what they use when they run
    code = (
        "import sys, contextlib, io\nfrom subobject_vlm.commands import COMMANDS, build_parser\n"
        "parser = build_parser()\nprint('torch' in sys.modules, 'numpy' in sys.modules)\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):\n"
        "    parser.parse_args(['segment', '--help'])\n"
        "print('(default: 0.1)' in out.getvalue(), 'slic' in out.getvalue())"
    )
    assert run_python(code).splitlines() == ["False False", "True True"]


def test_convert_dtype_choices_are_the_device_table():
    from subobject_vlm.commands._files import DTYPE_NAMES
    from subobject_vlm.commands.convert import DTYPE_CHOICES
    from subobject_vlm.devices import DTYPES

    assert DTYPE_NAMES == tuple(DTYPES) and DTYPE_CHOICES == ("auto", *DTYPES)


def test_every_option_of_every_command_has_help_text():
    import argparse

    from subobject_vlm.commands import build_parser

    subcommands = build_parser()._subparsers._group_actions[0].choices
    for name, parser in subcommands.items():
        for action in parser._actions:
            assert action.help or isinstance(action, argparse._HelpAction), (name, action.option_strings)


def run_cli(code: str, *argv: str) -> subprocess.CompletedProcess:
    """``code`` (which may prepare the interpreter), then the command line ``argv`` in a fresh interpreter;
    prints the exit status and which heavy libraries were imported."""
    code += (
        "\nimport sys\nfrom subobject_vlm.cli import main\nstatus = main(sys.argv[1:])\n"
        "print(status, 'torch' in sys.modules, 'transformers' in sys.modules)\n"
    )
    return subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    "option, error",
    [
        (["--model", "defualt"], "unknown tokenizer 'defualt': use default, gradient"),
        (["--device", "foo"], "device must be cpu, cuda, cuda:N, mps or xpu, got 'foo'"),
        (["--device", "cuda:x"], "device must be"),
    ],
)
def test_a_mistyped_model_or_device_fails_before_torch_loads(tmp_path, option, error):
    result = run_cli("", "segment", str(tmp_path), "--out", str(tmp_path / "out"), *option)
    assert result.stdout.split() == ["2", "False", "False"]
    assert (
        result.stderr.startswith(f"subobject-vlm segment: error: {error}") and result.stderr.count("\n") == 1
    )


def test_ctrl_c_during_start_up_is_one_line_and_exit_status_130(tmp_path):
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    ctrl_c_while_torch_loads = (
        "import os, signal, sys\n"
        "class CtrlC:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'torch':\n"
        "            os.kill(os.getpid(), signal.SIGINT)\n"
        "sys.meta_path.insert(0, CtrlC())\n"
    )
    command = ["segment", str(tmp_path / "a.png"), "--out", str(tmp_path / "out"), "--model", "gradient"]
    result = run_cli(ctrl_c_while_torch_loads, *command)
    assert result.stdout.split()[0] == "130"
    assert result.stderr == "subobject-vlm segment: interrupted\n"


def test_help_shows_no_default_where_there_is_none():
    from subobject_vlm.commands import build_parser

    subcommands = build_parser()._subparsers._group_actions[0].choices
    for name, parser in subcommands.items():
        text = parser.format_help()
        assert not any(f"(default: {value})" in text for value in ("None", "False", "True")), name
    segment = " ".join(subcommands["segment"].format_help().split())
    assert "(None:" not in segment
    assert "--out OUT output folder (created if missing) --model" in segment
