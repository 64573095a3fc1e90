"""The installable package (pyproject.toml): its dependencies, its wheel, and the ``cattlecounter``
command and ``ml_engine`` library as an installed wheel gives them, with no PYTHONPATH and no
checkout in the current directory."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.fixtures_video import write_clip

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("api", "core", "worker", "ml_engine", "allinone")
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def requirement_lines(name: str) -> list[str]:
    """A requirements file's requirements, the files it includes (-r) first."""
    lines: list[str] = []
    for raw in (ROOT / name).read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.startswith("-r "):
            lines += requirement_lines(line.removeprefix("-r ").strip())
        elif line:
            lines.append(line)
    return lines


def _name(requirement: str) -> str:
    return re.split(r"[\[=<>~!]", requirement, maxsplit=1)[0].strip().lower()


def test_the_package_depends_on_what_requirements_txt_pins() -> None:
    """requirements.txt is what the images and `make` install; the wheel must ask for the same
    (torch as a range: pyproject.toml says why)."""
    declared = {_name(r): r for r in PYPROJECT["project"]["dependencies"]}
    pinned = {_name(r): r for r in requirement_lines("requirements.txt")}
    assert declared.keys() == pinned.keys()
    differing = {name for name in pinned if declared[name].replace(" ", "") != pinned[name].replace(" ", "")}
    assert differing == {"torch"}, differing
    assert pinned["torch"] == "torch==2.13.0" and declared["torch"] == "torch>=2.13,<2.14"


def test_the_console_script_is_the_all_in_one_cli() -> None:
    assert PYPROJECT["project"]["scripts"] == {"cattlecounter": "allinone.cli:main"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`pip wheel --no-deps` of a copy of the checkout (so the build's scratch stays out of it)."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for package in PACKAGES:
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("wheel")
    # no build isolation: setuptools comes from this venv, not from an index
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(out), str(source)], check=True, capture_output=True, timeout=300)
    (built,) = out.glob("cattlecounter-*.whl")
    return built


@pytest.mark.slow
@pytest.mark.heavy
def test_the_wheel_holds_the_five_packages_and_their_data(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {name.split("/", 1)[0] for name in names if not name.startswith("cattlecounter-")} == set(PACKAGES)
    shipped = {f"api/static/{p.relative_to(ROOT / 'api' / 'static').as_posix()}"
               for p in (ROOT / "api" / "static").rglob("*") if p.is_file()}
    assert shipped <= names  # the dashboard, its vendored hls.js included
    assert {"ml_engine/schemas/stats.schema.json", "ml_engine/schemas/stills_stats.schema.json"} <= names


def _fresh_venv(directory: Path) -> Path:
    """A venv whose own site-packages starts empty and then sees this venv's third-party
    packages (torch & co., installed once) through a .pth file; the project is not among them."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(directory)], check=True, timeout=120)
    python = directory / "bin" / "python"
    own = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              check=True, capture_output=True, text=True).stdout.strip())
    shared = sysconfig.get_paths()["purelib"]
    (own / "shared-venv.pth").write_text(f"import site; site.addsitedir({shared!r})\n", encoding="utf-8")
    return python


@pytest.mark.slow
@pytest.mark.heavy
def test_an_installed_wheel_counts_a_clip_and_serves_the_library(wheel: Path, tiny_rtdetr_dir: Path,
                                                                 tmp_path: Path) -> None:
    python = _fresh_venv(tmp_path / "venv")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)],
                   check=True, capture_output=True, timeout=300)
    elsewhere = tmp_path / "elsewhere"  # not the checkout: the project must come from the wheel
    elsewhere.mkdir()
    write_clip(elsewhere / "clip.mp4", frames=10)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}

    library = subprocess.run(
        [str(python), "-c", "from ml_engine.counting import ObjectCounter, CountingLine, CountingZone; "
                            "import ml_engine; print(ml_engine.__file__)"],
        cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120)
    assert library.returncode == 0, library.stderr
    assert Path(library.stdout.strip()).is_relative_to(tmp_path / "venv")  # the wheel's copy, not the checkout's

    count = subprocess.run(
        [str(tmp_path / "venv" / "bin" / "cattlecounter"), "count", "clip.mp4", "--model", str(tiny_rtdetr_dir),
         "--no-progress"],
        cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300)
    assert count.returncode == 0, count.stderr
    results = elsewhere / "runs" / "count" / "clip"
    assert f"results: {results}" in count.stdout
    assert {"annotated.mp4", "stats.json"} <= {path.name for path in results.iterdir()}
