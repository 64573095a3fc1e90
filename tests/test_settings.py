"""load_settings: every mistake is a ConfigError that names the variable to fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config import Settings, StorageBackend, load_settings, setting_env_names
from core.errors import ConfigError


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what a test passes counts: no stray variables from the shell or CI."""
    for name in setting_env_names():
        monkeypatch.delenv(name, raising=False)


def load(**env: str) -> Settings:
    return load_settings(env=env, env_file=None)


def test_defaults_need_no_configuration() -> None:
    settings = load()
    assert settings.storage_backend is StorageBackend.LOCAL
    assert settings.lease_renew_seconds < settings.lease_seconds


def test_azure_without_connection_string_or_account_url_names_both() -> None:
    with pytest.raises(ConfigError) as error:
        load(STORAGE_BACKEND="azure")
    assert "AZURE_STORAGE_CONNECTION_STRING" in str(error.value)
    assert "AZURE_STORAGE_ACCOUNT_URL" in str(error.value)


def test_azure_with_a_connection_string_is_accepted() -> None:
    settings = load(STORAGE_BACKEND="azure", AZURE_STORAGE_CONNECTION_STRING="UseDevelopmentStorage=true")
    assert settings.storage_backend is StorageBackend.AZURE


def test_unknown_backend_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="STORAGE_BACKEND"):
        load(STORAGE_BACKEND="s3")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LEASE_SECONDS", "sixty"),
        ("LEASE_SECONDS", "-5"),
        ("MAX_UPLOAD_BYTES", "0"),
        ("BATCH_SIZE", "1.5"),
        ("WORKER_CONCURRENCY", "1000"),
        ("CONFIDENCE_THRESHOLD", "2"),
        ("WORKER_METRICS_PORT", "70000"),
        ("VIDEO_PRESET", "turbo"),
        ("VIDEO_CRF", "52"),
        ("VIDEO_ENCODER", "vaapi"),
        ("TILING", "huge"),
        ("TILE_BATCH_SIZE", "0"),
    ],
)
def test_bad_numbers_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load(**{name: value})


def test_every_bad_variable_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as error:
        load(BATCH_SIZE="0", MAX_ATTEMPTS="zero")
    assert "BATCH_SIZE" in str(error.value) and "MAX_ATTEMPTS" in str(error.value)


@pytest.mark.parametrize("renew", ["30", "45"])
def test_lease_renewal_must_be_shorter_than_the_lease(renew: str) -> None:
    with pytest.raises(ConfigError) as error:
        load(LEASE_SECONDS="30", LEASE_RENEW_SECONDS=renew)
    assert "LEASE_RENEW_SECONDS" in str(error.value) and "LEASE_SECONDS" in str(error.value)


def test_csv_lists_are_split_trimmed_and_classes_lowercased() -> None:
    settings = load(API_KEYS=" key-one, key-two ,,key-three ", CLASSES="Cow, SHEEP ,horse,")
    assert settings.api_keys == ["key-one", "key-two", "key-three"]
    assert settings.classes == ["cow", "sheep", "horse"]
    assert load(API_KEYS="", CLASSES="").api_keys == []


def test_variable_names_are_case_insensitive_in_a_mapping() -> None:
    assert load(lease_seconds="90", LEASE_RENEW_SECONDS="30").lease_seconds == 90


def test_process_environment_and_env_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("QUEUE_NAME=from-file\nBATCH_SIZE=8\n")
    monkeypatch.setenv("BATCH_SIZE", "16")  # the process environment wins over the file
    settings = load_settings(env_file=env_file)
    assert (settings.queue_name, settings.batch_size) == ("from-file", 16)


def test_queue_and_table_urls_derive_from_the_blob_url() -> None:
    settings = load(STORAGE_BACKEND="azure", AZURE_STORAGE_ACCOUNT_URL="https://acct.blob.core.windows.net")
    assert settings.queue_account_url == "https://acct.queue.core.windows.net"
    assert settings.table_account_url == "https://acct.table.core.windows.net"
    explicit = load(
        STORAGE_BACKEND="azure",
        AZURE_STORAGE_ACCOUNT_URL="https://acct.blob.core.windows.net",
        AZURE_TABLE_ACCOUNT_URL="https://tables.example",
    )
    assert explicit.table_account_url == "https://tables.example"
