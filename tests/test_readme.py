"""Every command in the README runs as written: the command-line walkthrough is executed by bash, in a
scratch folder beside a view of the repository's examples, with this environment's `sieve` and
`python` first on the path."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.helpers import skip_unless_ort_exact

ROOT = Path(__file__).parent.parent


def test_readme_walkthrough_runs(tmp_path):
    skip_unless_ort_exact()
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)```", text, re.S)
    assert len(blocks) == 1 and "sieve compile" in blocks[0]
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", blocks[0]], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"stdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}"
    assert "onnxruntime == sieve run == sieve interpret, bit for bit" in done.stdout
    try_dir = tmp_path / "try"
    assert (try_dir / "again.sieve").read_bytes() == (try_dir / "lenet5.sieve").read_bytes()
    for f in ("r18_q.onnx", "r18.sieve", "r18nm.sieve", "sparse.sieve", "stats.json", "slow.toml", "r18mc.sieve",
              "mc.json", "r18mc.json", "r18rows.sieve", "r18pipe.sieve", "front.png", "study/summary.md",
              "study/heatmap.png"):
        assert (try_dir / f).stat().st_size > 0, f
