"""A request's job parameters, checked at the edge: form fields and JSON bodies become a
validated ``JobParams`` (and a stream's ``StreamOptions``), or a 422 naming each bad field.

The rules live with ``JobParams``, which the worker reads the job with, so both ends apply
the same ones. A new form field of POST /jobs that is a job parameter belongs in JobParams;
one that names something to fetch (like ``upload_id``) is skipped in ``parse_params`` and
handled by the route.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from core.config import Settings
from core.errors import InvalidInput, describe_validation_error, dotted
from core.jobs import JobParams, StreamOptions, has_relative_units, utcnow
from core.netpolicy import check_stream_url
from core.webhooks import check_callback_url

MAX_IDEMPOTENCY_KEY = 200
# form fields of POST /jobs that are not job parameters: they name the job's input
INPUT_FIELDS = ("params", "upload_id", "telemetry", "telemetry_upload_id")


def parse_params(fields: Mapping[str, str], settings: Settings) -> JobParams:
    """Build JobParams from form fields: an optional JSON ``params`` object, overridden by
    individual fields (``classes=cow,sheep``, ``threshold=0.4``, ``lines=[...]`` ...).
    Raises InvalidInput naming each bad field."""
    raw: dict[str, Any] = {}
    if fields.get("params", "").strip():
        raw.update(parse_json("params", fields["params"], expect=dict))
    for name, value in fields.items():
        if name in INPUT_FIELDS or not value.strip():
            continue
        raw[name] = _field_value(name, value)
    return check_params(raw, settings)


def check_params(raw: dict[str, Any], settings: Settings) -> JobParams:
    """Everything the worker would refuse in a job's parameters, refused now with a 422 (only
    class names wait for a model card: see ``Submitter.check_classes``). The rules live with
    JobParams, which the worker reads the job with, so both ends apply the same ones."""
    try:
        params = JobParams.model_validate(raw)
    except ValidationError as exc:
        raise InvalidInput(describe_params_error(exc)) from None
    if params.model_id and not settings.allow_model_override:
        raise InvalidInput("model_id: this service does not allow choosing the model (ALLOW_MODEL_OVERRIDE=false)")
    if params.callback_url is not None:
        check_callback_url(str(params.callback_url), settings.webhook_allow_private)
    return params


# counting parameters of a video that mean nothing on a live stream: refused, not ignored
NOT_FOR_STREAMS = {
    "frame_stride": "a stream processes the newest frame whenever the detector is free",
    "frame_interval_seconds": "a stream processes the newest frame whenever the detector is free",
    "stitching": "offline stitching needs the whole video; streams are counted live",
}
MAX_SOURCE_URL = 2048


def check_stream_request(body: dict[str, Any], settings: Settings) -> tuple[str, JobParams, StreamOptions]:
    """``POST /streams``'s JSON body as (source URL, counting parameters, stream options),
    refusing with a 422 what the worker would refuse, and a private source address outside
    STREAM_ALLOWED_NETWORKS (stream_source_not_allowed). No message repeats the URL."""
    url = body.get("source_url")
    if not isinstance(url, str) or not url.strip():
        raise InvalidInput("source_url: required, the camera's rtsp://, rtsps:// or http(s):// (HLS) URL")
    url = url.strip()
    if len(url) > MAX_SOURCE_URL or not url.isprintable():
        raise InvalidInput(f"source_url: at most {MAX_SOURCE_URL} printable characters")
    refused = sorted(set(body) & set(NOT_FOR_STREAMS))
    if refused:
        raise InvalidInput("; ".join(f"{name}: not for streams ({NOT_FOR_STREAMS[name]})" for name in refused))
    option_names = set(StreamOptions.model_fields)
    try:
        stream = StreamOptions.model_validate({k: v for k, v in body.items() if k in option_names})
    except ValidationError as exc:
        raise InvalidInput(describe_params_error(exc)) from None
    params = check_params({k: v for k, v in body.items() if k not in option_names and k != "source_url"}, settings)
    if has_relative_units(params):  # nothing has seen a frame yet to turn 0..1 into pixels
        raise InvalidInput('lines, zones: "units": "relative" is for videos only; a stream takes the '
                           "camera's pixels (draw them on a snapshot: see docs/api.md)")
    _check_stream_limits(stream, params, settings)
    check_stream_url(url, settings.stream_allowed_networks)
    return url, params, stream


def _check_stream_limits(stream: StreamOptions, params: JobParams, settings: Settings) -> None:
    cap = settings.max_stream_seconds
    if cap is not None and stream.duration_s is not None and stream.duration_s > cap:
        raise InvalidInput(f"duration_s: at most {cap:g} s on this service (MAX_STREAM_SECONDS)")
    if stream.end_at is not None and stream.end_at <= utcnow():
        raise InvalidInput("end_at: already past")
    if stream.events and params.callback_url is None:
        raise InvalidInput("events: needs a callback_url to send the stream.events webhooks to")


def _field_value(name: str, value: str) -> Any:
    value = value.strip()
    if name == "classes" and not value.startswith("["):
        return [item for item in value.split(",")]
    if name == "lines" and not value.startswith("["):
        return [_line_from_csv(part) for part in value.split(";") if part.strip()]
    if name in ("lines", "zones", "classes"):
        return parse_json(name, value, expect=list)
    return value


def _line_from_csv(text: str) -> dict[str, Any]:
    try:
        x1, y1, x2, y2 = (float(v) for v in text.split(","))
    except ValueError:
        raise InvalidInput(f"lines: expected 'x1,y1,x2,y2' (or a JSON list), got {text!r}") from None
    return {"start": (x1, y1), "end": (x2, y2)}


def parse_json(name: str, value: str | bytes, expect: type) -> Any:
    """Parse a client's JSON, refusing with a 422 what is malformed, of the wrong type, or
    nested deeper than the parser can follow (which would otherwise be a 500)."""
    try:
        parsed = json.loads(value)
    except RecursionError:
        raise InvalidInput(f"{name}: JSON nested too deeply") from None
    except ValueError:
        raise InvalidInput(f"{name}: not valid JSON") from None
    if not isinstance(parsed, expect):
        raise InvalidInput(f"{name}: expected a JSON {'object' if expect is dict else 'list'}")
    return parsed


def describe_params_error(exc: ValidationError) -> str:
    """pydantic's errors about a request's parameters as one line: ``field: problem; ...``."""
    return describe_validation_error(exc.errors(), name=lambda location: dotted(location) or "params")


def check_idempotency_key(key: str | None) -> str | None:
    if key is None:
        return None
    key = key.strip()
    if not key or len(key) > MAX_IDEMPOTENCY_KEY or not key.isprintable():
        raise InvalidInput(f"Idempotency-Key must be 1-{MAX_IDEMPOTENCY_KEY} printable characters")
    return key


