"""The built package: one import name, and import layers that point one way.

Both checks run on a wheel built from this checkout, as `pip install latkit` would install it:
there `latkit/profilers`, `latkit/predictors` and `latkit/search` are real folders, which is also
the layout `lint-imports` needs to see the whole package.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (path,) = out.glob("latkit-*.whl")
    return path


def test_the_only_top_level_import_name_is_latkit(wheel, tmp_path):
    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"latkit"}

    env = tmp_path / "venv"
    venv.create(env, with_pip=True)
    python = env / "bin" / "python"
    subprocess.run(
        [python, "-m", "pip", "install", "-q", "--no-deps", str(wheel)],
        check=True,
        capture_output=True,
    )
    probe = (
        "import importlib.util as u\n"
        "for name in ('latkit', 'latkit.profilers', 'latkit.predictors', 'latkit.search'):\n"
        "    assert u.find_spec(name) is not None, name\n"
        "for name in ('profilers', 'predictors', 'search'):\n"
        "    assert u.find_spec(name) is None, name + ' is importable'\n"
        "try:\n"
        "    import search\n"
        "except ModuleNotFoundError:\n"
        "    pass\n"
        "else:\n"
        "    raise AssertionError('import search succeeded')\n"
    )
    result = subprocess.run([python, "-c", probe], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_import_layers_hold(wheel, tmp_path):
    """`lint-imports` with the contracts in pyproject.toml, on the unpacked wheel."""
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint, "import-linter is part of the test extra: pip install -e '.[test]'"
    zipfile.ZipFile(wheel).extractall(tmp_path / "site")
    result = subprocess.run(
        [lint, str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout
