"""The README's Python examples are run as written, so they cannot drift from the code.

They run in a fresh process (as a user would run them) whose Hub is a Hub-compatible server on 127.0.0.1, so the
push and load examples talk to a real Hub protocol with the real clients.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.hub_server import HubServer

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def test_readme_python_blocks_run(tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "the README has no Python example"
    script = tmp_path / "readme.py"
    script.write_text("\n".join(blocks))  # blocks build on each other, as in a notebook
    workdir = tmp_path / "work"
    workdir.mkdir()
    with HubServer(tmp_path / "hub", users={"hf_readme_token": ("your-name", [])}) as hub:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_", "TRANSFORMERS_"))}
        env |= hub.env(tmp_path / "hf_home") | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
        result = subprocess.run(
            [sys.executable, str(script)], cwd=workdir, env=env, capture_output=True, text=True, timeout=1200
        )
        pushed = {repo_id for _, repo_id in hub.state.repos}
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    assert pushed == {"your-name/readme-sids", "your-name/readme-recommender", "your-name/readme-beauty"}
