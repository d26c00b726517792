"""Build step: the wheel carries the web UI, built from web/ with npm when the bundle in
src/vidsync/web/static is missing or older than its sources.

Node.js is needed to build a wheel (or to install from a source tree or an sdist without the
bundle), never to run one. Everything else about the package is in pyproject.toml.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
WEB = ROOT / "web"
BUNDLE = ROOT / "src" / "vidsync" / "web" / "static" / "index.html"


def web_sources() -> list[Path]:
    top = [WEB / name for name in ("package.json", "package-lock.json", "index.html",
                                   "vite.config.ts", "tsconfig.json")]
    return [p for p in [*top, *(WEB / "src").rglob("*")] if p.is_file()]


def bundle_is_current() -> bool:
    sources = web_sources()
    if not sources:  # no web/ here (e.g. an sdist made without it): use the bundle as it is
        return BUNDLE.is_file()
    return BUNDLE.is_file() and BUNDLE.stat().st_mtime >= max(p.stat().st_mtime for p in sources)


class BuildPyWithWebUI(build_py):
    """``build_py`` that first builds the web UI (not for editable installs: ``make web`` does)."""

    def run(self) -> None:
        if not getattr(self, "editable_mode", False) and not bundle_is_current():
            npm = shutil.which("npm")
            if npm is None:
                raise SystemExit("building vidsync needs Node.js and npm, to build the web UI "
                                 "in web/ (or build from an sdist that carries it)")
            subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=WEB, check=True)
            subprocess.run([npm, "run", "build"], cwd=WEB, check=True)
        super().run()


setup(cmdclass={"build_py": BuildPyWithWebUI})
