"""The README's Python code blocks run as written, and its first two commands are the documented ones."""

import re

from conftest import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text()


def test_readme_python_blocks_run():
    blocks = re.findall(r"```python\n(.*?)```", README, flags=re.S)
    assert blocks, "the README has Python examples"
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {"__name__": "readme"})


def test_readme_starts_with_the_main_job_and_the_test_command():
    commands = re.findall(r"```bash\n(.*?)\n```", README, flags=re.S)[:2]
    assert commands[0].startswith("pip install -e . && subobject-vlm segment examples/images")
    assert commands[1] == 'pip install -e ".[test]" && pytest -q'
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    assert commands[1] in ci


def run_example(name: str, argv: list[str], monkeypatch) -> None:
    import runpy
    import sys

    monkeypatch.setattr(sys, "argv", [name, *argv])
    runpy.run_path(str(REPO_ROOT / "examples" / name), run_name="__main__")


def test_segment_example_runs(tmp_path, monkeypatch):
    run_example("segment.py", ["--max-tokens", "16", "--out", str(tmp_path)], monkeypatch)
    assert (tmp_path / "subobjects.png").exists() and (tmp_path / "felzenszwalb.png").exists()


def test_generate_example_runs(monkeypatch, capsys):
    run_example("generate.py", [], monkeypatch)
    assert "answer:" in capsys.readouterr().out


def test_train_example_runs(tmp_path, monkeypatch):
    run_example("train_tiny.py", [str(tmp_path / "run")], monkeypatch)
    assert (tmp_path / "run" / "merged" / "model.safetensors").exists()


def test_readme_token_efficiency_table_is_the_committed_run():
    """The "Does it help?" figures are those of benchmarks/results/compare_quick, not typed by hand."""
    results = (REPO_ROOT / "benchmarks" / "results" / "compare_quick" / "results.md").read_text()
    table = results.split("\n## ")[0]  # the main table; results.md's statistics sections follow it
    assert table in README
    assert "subobject-vlm compare-tokenizers --config configs/compare_quick.yaml" in README
