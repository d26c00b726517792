"""Installed like a Python user installs it: a built wheel serves the web UI with no Node.js and
no checkout, and a missing optional dependency is one line naming the extra, not a traceback."""

from __future__ import annotations

import re
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from harness import ROOT, ServerProcess

STATIC = ROOT / "src" / "vidsync" / "web" / "static"


@pytest.mark.parametrize("option, extra", [
    (["--database", "postgresql://127.0.0.1:1/none"], "postgres"),
    (["--redis", "redis://127.0.0.1:1/0"], "redis"),
])
def test_a_missing_extra_is_one_line_naming_it(tmp_path: Path, option: list[str], extra: str) -> None:
    """As after ``pip install vidsync`` without the extra: its library cannot be imported."""
    module = {"postgres": "asyncpg", "redis": "redis"}[extra]
    code = (f"import sys; sys.modules[{module!r}] = None\n"  # what an absent package looks like
            "from vidsync.cli import main; main()")
    run = subprocess.run([sys.executable, "-c", code, "serve", "--data-dir", str(tmp_path),
                          "--port", "0", *option], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2, run.stderr
    assert run.stderr.strip().splitlines() == [
        f"vidsync: {'--database postgresql://...' if extra == 'postgres' else '--redis'} needs"
        f" the '{extra}' extra: pip install 'vidsync[{extra}]'"], run.stderr
    assert run.stdout == ""


@pytest.fixture(scope="session")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``python -m build`` of this checkout (an sdist, and a wheel built from it), once."""
    out = tmp_path_factory.mktemp("dist")
    run = subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return out


@pytest.fixture
def installed(dist: Path, tmp_path: Path) -> Iterator[Path]:
    """A fresh venv with the wheel installed. Its dependencies come from this test run's own
    environment (a path line, no network): pip installs the wheel alone, so that ``vidsync``
    there can only be the wheel's."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    wheel = next(dist.glob("vidsync-*.whl"))
    site = next((venv / "lib").glob("python3*/site-packages"))
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"),
                    "install", "--quiet", "--no-deps", "--no-index", str(wheel)],
                   check=True, timeout=300)
    # Appended after the venv's own site-packages: the wheel's vidsync comes first, and this
    # environment's editable vidsync is not loaded (.pth files in a path line are not read).
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    yield venv


# Building runs pip in fresh build environments (and npm when the bundle is stale): minutes on a
# loaded machine, once per session.
@pytest.mark.timeout(600)
def test_the_sdist_carries_the_web_sources_and_the_wheel_the_built_ui(dist: Path) -> None:
    with tarfile.open(next(dist.glob("vidsync-*.tar.gz"))) as sdist:
        names = sdist.getnames()
    assert any(n.endswith("/web/package-lock.json") for n in names)
    assert any(n.endswith("/web/src/App.tsx") for n in names)
    assert not any("node_modules" in n for n in names)
    with zipfile.ZipFile(next(dist.glob("vidsync-*.whl"))) as wheel:
        names = wheel.namelist()
    assert "vidsync/web/static/index.html" in names
    assert any(re.fullmatch(r"vidsync/web/static/assets/[^/]+\.js", n) for n in names)
    assert not any(n.startswith("web/") for n in names)


@pytest.mark.timeout(600)
def test_the_installed_wheel_serves_the_ui(installed: Path, tmp_path: Path) -> None:
    python = installed / "bin" / "python"
    where = subprocess.run([python, "-c", "import vidsync; print(vidsync.__file__)"],
                           capture_output=True, text=True, check=True, cwd=tmp_path).stdout
    assert where.startswith(str(installed)), where

    server = ServerProcess(tmp_path / "data")
    server.command = [str(installed / "bin" / "vidsync")]
    server.cwd = tmp_path  # not the checkout: nothing of it is on the path
    server.start()
    try:
        page = httpx.get(server.url + "/", timeout=10)
        assert page.status_code == 200 and "The web UI is not built" not in page.text
        assert page.text == (STATIC / "index.html").read_text()
        script = re.search(r'<script[^>]+src="(/assets/[^"]+\.js)"', page.text)
        assert script, page.text
        asset = httpx.get(server.url + script.group(1), timeout=10)
        assert asset.status_code == 200 and "javascript" in asset.headers["Content-Type"]
        assert asset.content == (STATIC / script.group(1).lstrip("/")).read_bytes()
    finally:
        server.kill()
