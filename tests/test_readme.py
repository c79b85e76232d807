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


def test_segment_example_runs(tmp_path, monkeypatch):
    import runpy
    import sys

    monkeypatch.setattr(sys, "argv", ["segment.py", "--max-tokens", "16", "--out", str(tmp_path)])
    runpy.run_path(str(REPO_ROOT / "examples" / "segment.py"), run_name="__main__")
    assert (tmp_path / "subobjects.png").exists() and (tmp_path / "felzenszwalb.png").exists()
