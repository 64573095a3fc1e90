"""Helpers shared by the deployment-file tests (test_env_example, test_config_docs, test_compose,
test_dockerfiles, test_k8s): where the files are, and loaders that read them as Compose,
Kubernetes and .env.example readers would."""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

import yaml

from scripts import config_table
from scripts.config_table import parse_env_example

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


INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<default>[^}]*))?\}")


def interpolate_defaults(value: str) -> str:
    """What Compose substitutes for ``${NAME:-default}`` when neither the shell nor .env sets NAME."""
    return INTERPOLATION.sub(lambda m: m["default"] if m["op"] in (":-", "-") else "", value)


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


def duration_seconds(text: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1}
    return sum(float(number) * units[unit] for number, unit in re.findall(r"(\d+(?:\.\d+)?)([hms])", text))
