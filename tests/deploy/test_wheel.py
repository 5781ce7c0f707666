"""A clean install: the built wheel (not editable) in a fresh venv runs the demo from any folder.

``python -m build`` makes the sdist and the wheel (from a copy of the project, so the checkout is
not touched), ``twine check`` passes both, the wheel carries the example configs (equal to
configs/), the web page and the simulators; installed into a fresh venv it answers
``gateway --version``, validates its packaged demo config, runs ``gateway demo`` for 30 s from
another folder (its data lands there, nothing in site-packages) and the query command the demo
prints reads what it stored.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.helpers import free_port

ROOT = Path(__file__).resolve().parents[2]
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
#: What a copy of the project leaves out: environments, caches, data, npm's downloads.
NOT_SOURCE = shutil.ignore_patterns(
    ".venv", ".git", "node_modules", "data", "test-artifacts", ".*_cache", ".hypothesis", "*.egg-info",
    "__pycache__", "build", "dist",
)  # fmt: skip


def clean_env() -> dict[str, str]:
    """The environment of a user's shell: no project venv on PATH, no PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != venv_bin)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run(args: list[str], cwd: Path, timeout: float, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        args, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env or clean_env(), check=False
    )
    assert result.returncode == 0, (
        f"{shlex.join(args)} exited {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist and the wheel, built from a copy of the project by `python -m build`."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE, symlinks=True)
    out = root / "dist"
    run([sys.executable, "-m", "build", "--outdir", str(out), str(source)], cwd=root, timeout=600, env=dict(os.environ))
    return out


@pytest.mark.slow
def test_build_gives_an_sdist_and_a_wheel_that_twine_passes(dist: Path) -> None:
    files = sorted(p.name for p in dist.iterdir())
    assert files == [f"shopfloor_gateway-{VERSION}-py3-none-any.whl", f"shopfloor_gateway-{VERSION}.tar.gz"]
    output = run([sys.executable, "-m", "twine", "check", "--strict", *map(str, sorted(dist.iterdir()))], dist, 120)
    assert output.count("PASSED") == 2, output


@pytest.mark.slow
def test_the_wheel_carries_the_configs_the_web_page_and_the_simulators(dist: Path) -> None:
    (wheel,) = dist.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        for config in sorted((ROOT / "configs").glob("*.yaml")):
            # setup.py copies configs/ at build time: the packaged copy is the repository's
            assert archive.read(f"gateway/configs/{config.name}") == config.read_bytes(), config.name
    static = ROOT / "gateway" / "http" / "static"
    for file in static.rglob("*"):
        if file.is_file():
            assert f"gateway/http/static/{file.relative_to(static).as_posix()}" in names
    assert {"gateway/simulators/opcua.py", "gateway/simulators/s7.py", "gateway/py.typed"} <= names
    assert not [n for n in names if n.startswith(("tests/", "bench/", "configs/"))]


@pytest.mark.slow
def test_the_installed_wheel_runs_the_demo_from_any_folder_and_the_query_it_prints(dist: Path, tmp_path: Path) -> None:
    (wheel,) = dist.glob("*.whl")
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)], tmp_path, 120)
    python, gateway = venv / "bin" / "python", venv / "bin" / "gateway"
    # Dependencies from PyPI (pip's cache makes a second run quick), the gateway from the wheel only.
    run([str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", str(wheel)], tmp_path, 900)

    elsewhere = tmp_path / "plant-pc"
    elsewhere.mkdir()
    assert run([str(gateway), "--version"], elsewhere, 60).strip() == f"gateway {VERSION}"
    packaged = Path(
        run([str(python), "-c", "from gateway.demo import DEMO_CONFIG; print(DEMO_CONFIG)"], elsewhere, 60).strip()
    )
    assert packaged.is_file() and venv in packaged.parents, packaged
    assert "OK" in run([str(gateway), "validate", str(packaged)], elsewhere, 60)

    site = packaged.parent.parent
    before = {p for p in site.rglob("*") if "__pycache__" not in p.parts}
    output = run([str(gateway), "demo", "--duration", "30s", "--port", str(free_port())], elsewhere, 240)
    assert (elsewhere / "data" / "demo" / "history.db").is_file(), output[-3000:]
    assert {p for p in site.rglob("*") if "__pycache__" not in p.parts} == before  # nothing written in the package

    # The command the demo prints, run as printed, from the folder it ran in.
    query = next(line.strip() for line in output.splitlines() if "query" in line and "--measurement energy" in line)
    assert str(packaged) in query and str(gateway) in query, query
    table = run(shlex.split(query), elsewhere, 60)
    assert re.search(r"power_w", table) and len(table.splitlines()) > 5, table
