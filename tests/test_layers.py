"""The import layers are enforced: ``lint-imports`` (run by ``make lint``) fails on a bad import.

Each test copies the packages to a temporary folder, plants one import there and runs the
checker with the project's own contracts (pyproject.toml), as ``make lint`` does.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def copy_project(tmp_path: Path) -> Path:
    for package in ("gateway", "connectors"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__", "static"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def lint_imports(folder: Path) -> subprocess.CompletedProcess[str]:
    if not LINT_IMPORTS.exists():
        pytest.fail(f"{LINT_IMPORTS} is missing: import-linter is a test dependency (pip install -e '.[test]')")
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=folder,
        env={"PYTHONPATH": str(folder), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def plant(folder: Path, module: str, line: str) -> None:
    path = folder / Path(*module.split(".")).with_suffix(".py")
    path.write_text(path.read_text() + f"\n{line}\n")


def test_the_project_keeps_every_contract(tmp_path: Path) -> None:
    result = lint_imports(copy_project(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        # the core reaching up to the runtime (even only for type checking)
        (
            "gateway.point",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import gateway.runtime",
            "gateway:",
        ),
        # the pipeline reaching into the web server, inside a function
        ("gateway.pipeline", "def _probe() -> None:\n    import gateway.http.app", "gateway:"),
        # a connector reaching into a sink
        ("connectors.mqtt.source", "import gateway.sinks.historian", "connectors use the core"),
        # the core importing a connector
        ("gateway.config", "import connectors.opcua", "nothing below the runtime imports a connector"),
        # a cycle between two modules of one package
        ("connectors.mqtt.decode", "import connectors.mqtt.source", "no import cycle"),
    ],
)
def test_a_bad_import_breaks_a_contract(tmp_path: Path, module: str, line: str, broken: str) -> None:
    folder = copy_project(tmp_path)
    plant(folder, module, line)
    result = lint_imports(folder)
    assert result.returncode == 1, result.stdout + result.stderr
    broken_part = result.stdout.split("Broken contracts", 1)[-1]
    assert broken in broken_part, result.stdout
