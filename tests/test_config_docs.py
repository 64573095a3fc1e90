"""docs/configuration.md's settings table is the generator's output, and docs/operations.md names
every metric."""

from __future__ import annotations

from pathlib import Path

import pytest

from core import metrics
from core.config import setting_env_names
from core.errors import ConfigError
from scripts import config_table
from tests.fixtures_deploy import ROOT


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
    assert "| `WORKER_CONCURRENCY` | int ≥ 0, ≤ 64 | `1` |" in tables
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


