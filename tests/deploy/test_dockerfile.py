"""The Dockerfile builds the wheel in one stage and installs only that wheel in the image (no Docker engine here).

The image must run what pip users get: the package with its configs and web page inside, not
the source tree. Read statically, instruction by instruction (line continuations joined).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def stages() -> list[tuple[str, list[tuple[str, str]]]]:
    """[(stage name, [(INSTRUCTION, arguments)])] of the Dockerfile, in order."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    result: list[tuple[str, list[tuple[str, str]]]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, arguments = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            words = arguments.split()
            name = words[2] if len(words) >= 3 and words[1].lower() == "as" else str(len(result))
            result.append((name, []))
        else:
            assert result, f"{instruction} before FROM"
            result[-1][1].append((instruction, arguments.strip()))
    return result


def test_a_builder_stage_builds_the_wheel_and_the_image_installs_only_that_wheel() -> None:
    found = stages()
    assert len(found) >= 2, "a build stage and the image"
    (builder, build_steps), (_, image_steps) = found[0], found[-1]
    runs = [args for instruction, args in build_steps if instruction == "RUN"]
    assert any("-m build" in run and "--wheel" in run for run in runs), runs
    copies = [shlex.split(args) for instruction, args in build_steps if instruction == "COPY"]
    copied = {word for words in copies for word in words[:-1]}
    for needed in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "gateway", "connectors", "configs"):
        assert needed in copied, f"the build stage does not copy {needed}"

    from_builder = [args for instruction, args in image_steps if instruction == "COPY" and f"--from={builder}" in args]
    assert from_builder, "the image copies the wheel from the build stage"
    installs = [args for instruction, args in image_steps if instruction == "RUN" and "pip install" in args]
    assert installs and all(".whl" in run for run in installs), installs
    image_copies = [shlex.split(args) for instruction, args in image_steps if instruction == "COPY"]
    sources = {word for words in image_copies for word in words[:-1] if not word.startswith("--")}
    assert not sources & {"gateway", "connectors", ".", "pyproject.toml"}, f"the image copies source: {sources}"
    assert not any(re.search(r"pip install (-e )?\.(\s|$)", run) for run in installs)


def test_the_build_context_keeps_what_the_build_stage_needs() -> None:
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip()}
    for needed in ("setup.py", "MANIFEST.in", "configs", "gateway", "connectors", "README.md", "pyproject.toml"):
        assert needed not in ignored
