"""The example configs ship inside the wheel (``gateway/configs/``) while staying in ``configs/``.

``configs/`` is where the docs, the tests and the Dockerfile point, and where engineers edit
them; a built package has no repository beside it, so ``gateway demo`` reads its config from
the package. Copying at build time keeps one copy in the repository (no symlink, which a Windows
checkout breaks, and no second copy to drift). An editable install reads ``configs/`` directly
(gateway/demo.py looks in the package first, then in the repository).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

CONFIGS = Path(__file__).resolve().parent / "configs"


class BuildWithConfigs(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # the project's configs/ is read in place
        target = Path(self.build_lib) / "gateway" / "configs"
        target.mkdir(parents=True, exist_ok=True)
        files = sorted(CONFIGS.glob("*.yaml"))
        if not files:
            raise RuntimeError(f"no example configs in {CONFIGS}: the package needs configs/*.yaml")
        for file in files:
            shutil.copyfile(file, target / file.name)


setup(cmdclass={"build_py": BuildWithConfigs})
