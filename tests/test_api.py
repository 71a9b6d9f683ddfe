"""The Python API: the worked example of docs/python-api.md runs as written, and the wheel installs the
`sieve` namespace (and its console script) and nothing else at top level."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import sieve
from tests.helpers import skip_unless_ort_exact

ROOT = Path(__file__).parent.parent


def test_the_python_api_doc_example_runs(capsys):
    skip_unless_ort_exact()
    text = (ROOT / "docs" / "python-api.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) >= 4
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "docs/python-api.md", "exec"), namespace)   # noqa: S102 - our own doc
    out = capsys.readouterr().out
    assert "cycles" in out and "top-1:" in out and "refused:" in out


def test_api_surface_and_errors(tmp_path):
    for name in ("compile", "quantize", "simulate", "interpret", "load", "save", "arch", "zoo", "ERRORS",
                 "compile_model", "integer_model", "__version__"):
        assert hasattr(sieve, name), name
    assert set(sieve.__all__) >= {"compile", "simulate", "quantize"}
    assert sieve.arch.load("edge", **{"core.pe_rows": 4}).core.pe_rows == 4
    with pytest.raises(sieve.ERRORS, match="unknown key 'core.pe_row'.*did you mean 'pe_rows'"):
        sieve.arch.load("default", **{"core.pe_row": 4})
    with pytest.raises(sieve.ERRORS, match="a model is a .onnx or .sv file"):
        sieve.compile(42)
    prog = sieve.compile(sieve.zoo.graph("mlp"), dense_twin=False)
    with pytest.raises(sieve.ERRORS, match="inputs are required"):
        sieve.simulate(prog)
    with pytest.raises(sieve.ERRORS, match="differs from 'edge'"):
        sieve.simulate(prog, arch="edge", timing_only=True)
    # changing a capacity changes its derived energy per byte (and nothing the program sees)
    small = sieve.arch.load("default", **{"memory.l2_bytes": 1 << 20})
    assert small.energy_table.l2_pj_per_byte > 0 and small.fingerprint() == sieve.arch.load("default").fingerprint()


def test_wheel_installs_only_the_sieve_packages(tmp_path):
    """The sieve namespace, and beside it sieve_numerics: the integer rules below every layer, which
    the golden model (ir) and the simulator both import (neither may import the other's layers)."""
    dist, src = tmp_path / "dist", tmp_path / "src"
    import shutil                              # build from a clean copy: no stale build/ of the tree
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".venv", ".git", "build", "*.egg-info", "__pycache__",
                                                              ".hypothesis", ".pytest_cache", "demo-out", "try",
                                                              "out"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w",
                    str(dist), str(src)], check=True, cwd=tmp_path)
    wheel = next(dist.glob("sieve-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
    tops = {n.split("/")[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"sieve", "sieve_numerics"}
    for packaged in ("sieve/arch/presets/default.toml", "sieve/frontend/sieve.lark", "sieve/codegen/asm.lark",
                     "sieve/ir/passes/quantize.py", "sieve/cli.py"):
        assert packaged in names, packaged
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    site = next(venv.glob("lib/python*/site-packages"))
    before = {p.name for p in site.iterdir()}
    scripts = {p.name for p in (venv / "bin").iterdir()}
    # the fresh environment's own pip (another environment's pip would uninstall that one's sieve)
    subprocess.run([str(py), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)],
                   check=True)
    added = sorted({p.name for p in site.iterdir()} - before)
    assert [a for a in added if not a.endswith(".dist-info")] == ["sieve", "sieve_numerics"], added
    assert sorted({p.name for p in (venv / "bin").iterdir()} - scripts) == ["sieve"]
    # run from the fresh install (the project's own dependencies after it on the path), outside the tree
    deps = next(Path(sys.executable).parent.parent.glob("lib/python*/site-packages"))
    env = {**os.environ, "PYTHONPATH": str(deps)}
    probe = ("import importlib.util, sieve, numpy as np\n"
             "assert sieve.__file__.startswith(%r), sieve.__file__\n"
             "for name in ('ir', 'arch', 'cli', 'frontend', 'scheduler', 'codegen', 'simulator', 'dse'):\n"
             "    assert importlib.util.find_spec(name) is None, name\n"
             "p = sieve.compile(sieve.zoo.graph('lenet5'), dense_twin=False)\n"
             "r = sieve.simulate(p, np.zeros((1, 1, 32, 32), np.float32))\n"
             "print('ok', r.stats.cycles)\n") % str(site)
    done = subprocess.run([str(py), "-c", probe], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("ok"), done.stderr
    done = subprocess.run([str(py), "-m", "sieve", "--version"], env=env, cwd=tmp_path, capture_output=True,
                          text=True)
    assert done.returncode == 0 and done.stdout.startswith("sieve "), done.stderr
