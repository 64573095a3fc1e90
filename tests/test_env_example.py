""".env.example: documents every setting, sets only real ones, and its examples are valid values."""

from __future__ import annotations

import pytest

from core.config import load_settings, setting_env_names
from core.errors import ConfigError
from scripts import config_table
from scripts.config_table import known_variables, parse_env_example
from tests.fixtures_deploy import env_example_entries


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


