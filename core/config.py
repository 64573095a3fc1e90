"""Settings, read from the environment and ``.env`` (every one is documented in .env.example).

Nothing here runs at import time: ``load_settings()`` builds a validated ``Settings`` and
fails with a ConfigError that names the variable at fault. Processes call it once at
start-up and pass the result down, so tests can build their own.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from core.errors import ConfigError, InvalidInput, describe_validation_error
from core.jobs import DEFAULT_OWNER, Tracker
from core.tiling import parse_tiling
from core.video_encoding import X264_PRESETS


class StorageBackend(str, Enum):
    LOCAL = "local"
    AZURE = "azure"


class LogFormat(str, Enum):
    AUTO = "auto"  # json when stdout is not a terminal, text otherwise
    JSON = "json"
    TEXT = "text"


# Tenant names: they become storage keys and metrics labels, so a short plain alphabet.
OWNER_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")


@dataclass(frozen=True)
class ApiKey:
    """One configured key: whose it is, and whether it sees every owner's jobs."""

    key: str
    owner: str
    admin: bool = False


def parse_api_key(entry: str, admin: bool = False) -> ApiKey:
    """``name:key`` gives the key to tenant ``name``; a bare key belongs to ``default``.
    Raises ValueError for a name outside OWNER_NAME (a key holding ':' needs a name first)."""
    name, sep, key = entry.partition(":")
    if not sep:
        return ApiKey(key=entry, owner=DEFAULT_OWNER, admin=admin)
    if not OWNER_NAME.fullmatch(name) or not key:
        raise ValueError(
            f"entry {entry[:4]}... is not 'name:key' with a name of 1-64 letters, digits, '.', '_' or '-' "
            "and a key after the colon"
        )
    return ApiKey(key=key, owner=name, admin=admin)


class QuotaOverride(BaseModel):
    """One tenant's own limits in TENANT_QUOTAS; a field left out takes its QUOTA_MAX_* value."""

    model_config = ConfigDict(extra="forbid")
    max_queued_jobs: int | None = Field(default=None, ge=0)
    max_processing_jobs: int | None = Field(default=None, ge=0)
    max_stored_bytes: int | None = Field(default=None, ge=0)
    max_stream_hours: float | None = Field(default=None, ge=0, allow_inf_nan=False)


@dataclass(frozen=True)
class Quota:
    """A tenant's limits; 0 means no limit."""

    max_queued_jobs: int = 0
    max_processing_jobs: int = 0
    max_stored_bytes: int = 0
    max_stream_hours: float = 0.0


def _split_csv(value: Any) -> Any:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # --- storage ---------------------------------------------------------------------
    storage_backend: StorageBackend = StorageBackend.LOCAL
    data_dir: Path = Path("./data")
    azure_storage_connection_string: str | None = None
    azure_storage_account_url: str | None = None  # https://<account>.blob.core.windows.net
    azure_queue_account_url: str | None = None  # default: derived from the blob URL
    azure_table_account_url: str | None = None  # default: derived from the blob URL
    blob_container: str = "cattlecounter"
    queue_name: str = "jobs"
    poison_queue_name: str = "jobs-poison"
    jobs_table: str = "jobs"

    # --- storage timeouts: a storage service that stops answering ------------------------
    # Metadata, table and queue calls: connect and read timeouts per try, and a deadline for
    # the whole call with the SDK's retries (the API answers 503 storage_unavailable at it).
    # Blob transfers have no deadline (gigabytes take a while): they fail when stalled.
    storage_connect_timeout_s: float = Field(default=3.0, gt=0)
    storage_read_timeout_s: float = Field(default=3.0, gt=0)
    storage_deadline_s: float = Field(default=4.0, gt=0)
    storage_stall_timeout_s: float = Field(default=30.0, gt=0)

    # --- API -------------------------------------------------------------------------
    max_upload_bytes: int = Field(default=10 * 1024**3, gt=0)
    max_telemetry_bytes: int = Field(default=32 * 1024**2, gt=0)  # a flight's .SRT telemetry beside its video
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    upload_url_ttl_s: int = Field(default=3600, gt=0)
    read_url_ttl_s: int = Field(default=3600, gt=0)
    allow_model_override: bool = False

    # --- access: tenants and signed download links ---------------------------------------
    admin_api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    url_signing_secret: str | None = Field(default=None, min_length=32)
    # /metrics names no tenant unless asked; with keys configured, only these and admin keys read it
    metrics_key: str | None = Field(default=None, min_length=16)
    metrics_tenant_labels: bool = False

    # --- quotas per tenant (0: no limit); TENANT_QUOTAS gives named tenants their own ----------
    quota_max_queued_jobs: int = Field(default=0, ge=0)
    quota_max_processing_jobs: int = Field(default=0, ge=0)
    quota_max_stored_bytes: int = Field(default=0, ge=0)
    quota_max_stream_hours: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    tenant_quotas: Annotated[dict[str, QuotaOverride], NoDecode] = Field(default_factory=dict)

    # --- API: uploads that stall (hardening: API boundary) -------------------------------
    # a request body that sends nothing for this long is answered 408 and dropped, so a
    # client that stalls cannot hold a connection and a scratch file open indefinitely
    upload_stall_timeout_s: float = Field(default=60.0, gt=0, le=3600)

    # --- worker ------------------------------------------------------------------------
    lease_seconds: float = Field(default=60.0, gt=0)
    lease_renew_seconds: float = Field(default=20.0, gt=0)
    poll_interval_s: float = Field(default=1.0, gt=0)
    max_attempts: int = Field(default=3, ge=1)
    worker_concurrency: int = Field(default=1, ge=0, le=64)  # file-job threads; 0: a stream-only worker
    shutdown_grace_s: float = Field(default=60.0, ge=0)
    progress_interval_s: float = Field(default=2.0, gt=0)
    retry_backoff_s: float = Field(default=2.0, gt=0)
    worker_metrics_port: int = Field(default=9100, ge=0, le=65535)  # 0: no metrics server
    work_dir: Path | None = None  # scratch space for videos; default: a temp dir

    # --- resource caps for video files (rasters and streams will get their own) ----------
    max_video_pixels: int = Field(default=7680 * 4320, gt=0)  # 8K: 4K and 5.4K drone footage pass
    max_video_seconds: float = Field(default=4 * 3600, gt=0)
    frame_buffer_bytes: int = Field(default=1024**3, gt=0)  # decoded frames one job holds at once

    # --- stills and bulk jobs (many images, ZIPs, orthomosaics in one job) ----------------
    max_files_per_job: int = Field(default=5000, ge=1, le=100_000)  # files in one images job
    max_raster_pixels: int = Field(default=50_000 * 50_000, gt=0)  # width x height; larger files fail alone
    max_job_pixels: int = Field(default=2_000_000_000, gt=0)  # all of one job's images: the worker time it buys
    max_zip_entries: int = Field(default=10_000, ge=1)  # entries in one uploaded ZIP (folders too)
    max_zip_uncompressed_bytes: int = Field(default=20 * 1024**3, gt=0)  # all of a ZIP's files, unpacked
    max_zip_ratio: float = Field(default=200.0, gt=1)  # uncompressed/compressed of one entry: more is a bomb

    # --- model and counting ----------------------------------------------------------
    model_id: str = "PekingU/rtdetr_v2_r18vd"
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    batch_size: int = Field(default=4, ge=1, le=256)
    confidence_threshold: float = Field(default=0.5, ge=0.0, le=1.0)
    classes: Annotated[list[str], NoDecode] = Field(default_factory=list)  # empty: all classes
    input_size: int | None = Field(default=None, ge=32, le=4096)  # None: the checkpoint's own
    runtime: Literal["torch", "onnxruntime", "openvino", "auto"] = "torch"  # ml_engine/runtimes
    runtime_precision: Literal["fp32", "bf16", "int8"] = "fp32"  # bf16: openvino; int8: onnxruntime/openvino; never by default
    max_loaded_models: int = Field(default=2, ge=1, le=16)  # per worker process, least recently used unloaded
    frame_stride: int = Field(default=1, ge=1)
    min_track_hits: int = Field(default=3, ge=1)
    video_preset: str = "veryfast"  # x264 preset of annotated.mp4
    video_crf: int = Field(default=23, ge=0, le=51)  # x264 quality: lower is better and bigger
    video_encoder: Literal["auto", "libx264", "h264_nvenc"] = "auto"  # auto: NVENC where it opens, else libx264

    # --- tiled inference (ml_engine/tiling.py) --------------------------------------------
    tiling: str = "auto"  # auto | off | WxH; a job may set its own
    tiling_full_frame: bool = True  # also look at the whole frame when tiling (large animals)
    tile_batch_size: int = Field(default=64, ge=1, le=1024)  # most model inputs in one forward pass when tiling

    # --- tracking (ml_engine/counting)---------------------------------------------------------
    tracker: Tracker = Tracker.BOTSORT  # botsort: camera-motion compensated; bytetrack: fixed cameras
    stitching: bool = True  # re-link tracks broken by long gaps after the video (on|off)

    # --- webhooks (durable outbox, Standard Webhooks signatures: core/webhooks.py) --------
    webhook_secret: str | None = None  # whsec_<base64> as the spec has it, or any plain secret
    webhook_allow_private: bool = False
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    webhook_max_age_s: float = Field(default=86400.0, gt=0)  # retried until delivered or this old
    webhook_concurrency: int = Field(default=8, ge=1, le=256)  # deliveries at once per process

    # --- live streams (RTSP/HLS cameras; worker/streams.py) -------------------------------
    stream_queue_name: str | None = None  # default: <QUEUE_NAME>-streams (its poison queue: + "-poison")
    stream_concurrency: int = Field(default=1, ge=0, le=64)  # stream threads per worker; 0: no streams here
    stream_allowed_networks: Annotated[list[str], NoDecode] = Field(default_factory=list)  # CIDRs; empty: none private
    stream_stable_after_s: float = Field(default=600.0, gt=0)  # a run up this long resets the failed attempts
    max_stream_seconds: float | None = Field(default=None, gt=0)  # operator cap on one stream; none by default
    stream_event_cooldown_s: float = Field(default=30.0, ge=0)  # per line/zone: events within it are merged
    stream_events_per_minute: int = Field(default=6, ge=1, le=600)  # stream.events webhooks per stream and minute
    stream_segment_retention_s: float | None = Field(default=None, gt=0)  # live segments kept; none: all (the recording)
    stream_read_timeout_s: float = Field(default=10.0, gt=0, le=600)  # no frame for this long: a stall, reconnect
    stream_connect_attempts: int = Field(default=5, ge=1, le=100)  # a source that never worked fails after these
    stream_max_reconnects: int | None = Field(default=None, ge=0)  # once it has worked; none: reconnect for ever
    stream_backoff_max_s: float = Field(default=30.0, ge=1, le=3600)  # reconnect backoff doubles up to this

    # --- logging ------------------------------------------------------------------------
    log_level: str = "INFO"
    log_format: LogFormat = LogFormat.AUTO

    @field_validator("api_keys", "admin_api_keys", "classes", "stream_allowed_networks", mode="before")
    @classmethod
    def _csv(cls, value: Any) -> Any:
        return _split_csv(value)

    @field_validator("url_signing_secret", "metrics_key", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("api_keys", "admin_api_keys")
    @classmethod
    def _valid_keys(cls, entries: list[str]) -> list[str]:
        for entry in entries:
            parse_api_key(entry)  # raises ValueError naming the entry (its first characters only)
        return entries

    @field_validator("tenant_quotas", mode="before")
    @classmethod
    def _quotas_json(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return json.loads(value) if value.strip() else {}
            except ValueError:
                raise ValueError('not JSON; e.g. {"alice": {"max_queued_jobs": 10}}') from None
        return value

    @field_validator("tenant_quotas")
    @classmethod
    def _quota_tenants(cls, value: dict[str, QuotaOverride]) -> dict[str, QuotaOverride]:
        for name in value:
            if not OWNER_NAME.fullmatch(name):
                raise ValueError(f"{name[:64]!r} is not a tenant name (1-64 letters, digits, '.', '_' or '-')")
        return value

    def quota_for(self, owner: str) -> Quota:
        """``owner``'s limits: its TENANT_QUOTAS entry, the QUOTA_MAX_* settings for the rest."""
        own = self.tenant_quotas.get(owner, QuotaOverride())
        return Quota(**{
            name: getattr(own, name) if getattr(own, name) is not None else getattr(self, f"quota_{name}")
            for name in QuotaOverride.model_fields
        })

    @cached_property  # read on every request
    def accepted_keys(self) -> list[ApiKey]:
        """Every accepted key with its owner; empty when the API is open (no keys configured)."""
        return [parse_api_key(e) for e in self.api_keys] + [parse_api_key(e, admin=True) for e in self.admin_api_keys]

    @field_validator("webhook_secret")
    @classmethod
    def _usable_secret(cls, value: str | None) -> str | None:
        """A whsec_ secret must decode (core.webhooks.signing_key), or every signature is wrong."""
        if value and value.startswith("whsec_"):
            try:
                if not base64.b64decode(value[len("whsec_"):], validate=True):
                    raise ValueError
            except (binascii.Error, ValueError):
                raise ValueError("starts with whsec_ but the rest is not base64 (as in whsec_MfKQ9r8G...)") from None
        return value or None

    @field_validator("stream_allowed_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not a network in CIDR form (e.g. 10.20.0.0/16)") from None
        return value

    @field_validator("max_stream_seconds", "stream_segment_retention_s", "stream_max_reconnects", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _some_work(self) -> Settings:
        if self.worker_concurrency == 0 and self.stream_concurrency == 0:
            raise ValueError("WORKER_CONCURRENCY and STREAM_CONCURRENCY are both 0: a worker would take no work")
        return self

    @property
    def stream_queue(self) -> str:
        """The stream jobs' queue: separate, so streams (which run for hours) never hold up files."""
        return self.stream_queue_name or f"{self.queue_name}-streams"

    @property
    def stream_poison_queue(self) -> str:
        return f"{self.stream_queue}-poison"

    @field_validator("video_preset")
    @classmethod
    def _known_preset(cls, value: str) -> str:
        if value not in X264_PRESETS:
            raise ValueError(f"must be one of {', '.join(X264_PRESETS)}")
        return value

    @field_validator("tiling")
    @classmethod
    def _known_tiling(cls, value: str) -> str:
        try:
            return parse_tiling(value).text
        except InvalidInput as exc:
            raise ValueError(str(exc)) from None

    @field_validator("classes")
    @classmethod
    def _lower(cls, value: list[str]) -> list[str]:
        return [c.lower() for c in value]

    @model_validator(mode="after")
    def _check_azure(self) -> Settings:
        azure_configured = self.azure_storage_connection_string or self.azure_storage_account_url
        if self.storage_backend is StorageBackend.AZURE and not azure_configured:
            raise ValueError(
                "STORAGE_BACKEND=azure needs AZURE_STORAGE_CONNECTION_STRING "
                "(a connection string, e.g. Azurite's) or AZURE_STORAGE_ACCOUNT_URL "
                "(https://<account>.blob.core.windows.net, used with DefaultAzureCredential)"
            )
        keys = [entry.key for entry in self.accepted_keys]
        if len(set(keys)) != len(keys):
            raise ValueError("API_KEYS and ADMIN_API_KEYS hold the same key twice: each key has one owner")
        if self.metrics_key is not None and self.metrics_key in keys:
            raise ValueError("METRICS_KEY is also an API key: give the scraper a key of its own")
        if self.lease_renew_seconds >= self.lease_seconds:
            raise ValueError(
                f"LEASE_RENEW_SECONDS ({self.lease_renew_seconds}) must be shorter than "
                f"LEASE_SECONDS ({self.lease_seconds}) or leases expire before they are renewed"
            )
        return self

    @model_validator(mode="after")
    def _check_storage_timeouts(self) -> Settings:
        for name in ("storage_connect_timeout_s", "storage_read_timeout_s"):
            if getattr(self, name) > self.storage_deadline_s:
                raise ValueError(
                    f"{name.upper()} ({getattr(self, name)}) must not be longer than STORAGE_DEADLINE_S "
                    f"({self.storage_deadline_s}): the deadline would always end the call first"
                )
        return self

    @property
    def queue_account_url(self) -> str | None:
        return self.azure_queue_account_url or _sibling_endpoint(self.azure_storage_account_url, "queue")

    @property
    def table_account_url(self) -> str | None:
        return self.azure_table_account_url or _sibling_endpoint(self.azure_storage_account_url, "table")


def _sibling_endpoint(blob_url: str | None, service: str) -> str | None:
    if not blob_url:
        return None
    return blob_url.replace(".blob.", f".{service}.", 1)


def load_settings(env: Mapping[str, str] | None = None, env_file: str | Path | None = ".env") -> Settings:
    """Build validated settings from the process environment (or ``env``) and ``env_file``.

    Raises ConfigError naming each variable at fault.
    """
    try:
        if env is None:
            return Settings(_env_file=env_file)
        lowered = {key.lower(): value for key, value in env.items()}
        known: dict[str, Any] = {name: lowered[name] for name in Settings.model_fields if name in lowered}
        return Settings(_env_file=env_file, **known)
    except ValidationError as exc:
        raise ConfigError("invalid settings: " + describe_validation_error(exc.errors(), name=_variable)) from None


def _variable(location: tuple[Any, ...]) -> str:
    """The environment variable behind a settings error's location."""
    return "_".join(str(part) for part in location).upper()


def setting_env_names() -> set[str]:
    """Every environment variable the settings model reads (for checking compose/k8s files)."""
    return {name.upper() for name in Settings.model_fields}
