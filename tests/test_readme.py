"""The README's Python examples are run as written, so they cannot drift from the code."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_blocks_run(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "the README has no Python example"
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__readme__"}  # blocks build on each other, as in a notebook
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)
