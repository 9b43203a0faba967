"""pgjax's environments install as ``pgjax.envs``: no top-level ``envs`` package lands in
site-packages, so a user's own ``envs/`` package (common in RL projects) cannot shadow ours.

The CLI and a script run from a folder holding a decoy ``envs`` package whose import fails the way
the real shadowing did (``cannot import name 'make_vec_env' from 'envs'``)."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DECOY = "def make(*args, **kwargs):\n    raise RuntimeError('the decoy envs package was imported')\n"


@pytest.fixture
def decoy_folder(tmp_path) -> Path:
    (tmp_path / "envs").mkdir()
    (tmp_path / "envs" / "__init__.py").write_text(DECOY)
    return tmp_path


def _run(args, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PGJAX_COMPILATION_CACHE": "0"}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_installed_distribution_has_no_top_level_envs():
    top_level = importlib.metadata.distribution("pgjax").read_text("top_level.txt")
    assert top_level is not None
    assert [line for line in top_level.split() if line] == ["pgjax"]


def test_a_script_beside_a_decoy_envs_package_gets_pgjax_envs(decoy_folder):
    script = decoy_folder / "script.py"
    script.write_text(
        "import envs\n"
        "from pgjax.envs import make, make_vec_env\n"
        "from pgjax.run import runner  # the run layer imports pgjax.envs throughout\n"
        "import pgjax.envs\n"
        "assert envs.__file__.startswith(%r), envs.__file__\n"
        "assert pgjax.envs.__file__ != envs.__file__\n"
        "env, params = make('CartPole-v1')\n"
        "print(type(env).__name__, pgjax.envs.make_vec_env is make_vec_env)\n" % str(decoy_folder))
    result = _run([sys.executable, str(script)], decoy_folder)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["CartPole", "True"]


def test_the_cli_trains_from_a_folder_with_a_decoy_envs_package(decoy_folder):
    """``python -m`` puts the working folder first on sys.path: the decoy is importable as ``envs``."""
    result = _run([sys.executable, "-m", "pgjax.cli", "train", "ppo", "--seeds", "1",
                   "--total-steps", "64", "--set", "num_envs=2", "--set", "rollout_length=8",
                   "--set", "minibatches=2", "--set", "epochs=1", "--set", "hidden_sizes=8",
                   "--eval-episodes", "2", "--num-evals", "1", "--no-plots", "--no-tensorboard",
                   "--name", "decoy", "--runs-dir", str(decoy_folder / "runs")], decoy_folder)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (decoy_folder / "runs" / "decoy" / "summary.json").is_file()


def test_a_built_wheel_maps_the_envs_folder_to_pgjax_envs(tmp_path):
    """The wheel pip builds from pyproject.toml (build isolation: setuptools from the index, as any
    user's install gets it) holds ``pgjax/envs/`` and no top-level ``envs/``."""
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                             str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    (wheel,) = tmp_path.glob("pgjax-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "pgjax/envs/__init__.py" in names and "pgjax/envs/registry.py" in names
    assert not [n for n in names if n.startswith("envs/")]
    # every module of the source tree is in the wheel (a subpackage left out of pyproject's list
    # installs from an editable checkout and breaks from a wheel)
    sources = [f"pgjax/{p.relative_to(ROOT / 'pgjax').as_posix()}" for p in (ROOT / "pgjax").rglob("*.py")]
    sources += [f"pgjax/envs/{p.relative_to(ROOT / 'envs').as_posix()}" for p in (ROOT / "envs").rglob("*.py")]
    assert sorted(set(sources) - set(names)) == []
