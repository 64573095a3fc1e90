"""The published OpenAPI schema holds: schemathesis generates requests from /openapi.json, valid
ones and invalid ones, sends them to the app (in process, on the local backend) and checks every
answer: no 5xx, each answer as documented (status, content type, body), no request that the
schema calls valid refused, no request it calls invalid accepted. Bounded: a fixed seed and a few
examples per operation, seconds in every run.

A schema says what a request looks like, not which uploads exist or which hosts resolve. Before a
valid request is sent, ``ground`` fills in those facts (each one listed there, with why), so a
refusal left over is a schema that promises too much.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import re
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, assume, given, seed, settings
from hypothesis.errors import Unsatisfiable
from jsonschema import Draft202012Validator
from schemathesis import GenerationMode

from api.main import create_app
from api.submission import Submitter
from api.uploads import upload_data_path
from core.backends import Backends, build_backends
from core.config import Settings
from core.errors import InvalidInput
from core.jobs import JobParams
from core.tiling import TILING_PATTERN, parse_tiling
from tests.fixtures_stills import image_bytes
from tests.fixtures_telemetry import dji_srt
from tests.fixtures_video import write_clip

SEED = 20261207
EXAMPLES_PER_OPERATION = 10
API_KEY = "contract-test-key"
CAMERA = "rtsp://127.0.0.1:8554/cam"  # inside the STREAM_ALLOWED_NETWORKS below
PNG = image_bytes("PNG", 32, 24)
SRT = dji_srt(frames=3, fps=10.0).encode()  # the camera clip's 3 frames
# operations whose grounded valid requests must succeed (the others name jobs that do not exist)
ACCEPTING = ("POST /jobs", "POST /submit-job", "POST /streams", "POST /streams/snapshot", "POST /uploads", "PUT /uploads/{upload_id}",
             "GET /jobs", "GET /health", "GET /ready")


@dataclass
class Service:
    settings: Settings
    backends: Backends
    submitter: Submitter
    tmp: Path
    camera_video: str  # a video served on loopback: a source POST /streams/snapshot can take a picture of


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    tmp = tmp_path_factory.mktemp("contract")
    app_settings = Settings(_env_file=None, storage_backend="local", data_dir=tmp / "data",  # type: ignore[call-arg]
                            log_format="text", stream_allowed_networks=["127.0.0.0/8"], api_keys=[API_KEY])
    backends = build_backends(app_settings)
    with _served(write_clip(tmp / "camera.mp4", frames=3)) as camera_video:
        yield Service(app_settings, backends, Submitter(app_settings, backends), tmp, camera_video)
    backends.close()


@contextlib.contextmanager
def _served(path: Path) -> Iterator[str]:
    """``path`` over HTTP on loopback, as its URL."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(path.parent)))
    threading.Thread(target=server.serve_forever, daemon=True, name="contract-camera").start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/{path.name}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def api_schema(service: Service):
    return schemathesis.openapi.from_asgi("/openapi.json", create_app(service.settings, service.backends))


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda mode: mode.value)
def test_the_api_keeps_its_published_schema(api_schema, service: Service, mode: GenerationMode) -> None:
    failures = []
    statuses: dict[str, set[int]] = {}
    for result in api_schema.get_all_operations():
        operation = result.ok()
        try:
            _exercise(operation, mode, service, statuses.setdefault(operation.label, set()))
        except Unsatisfiable as exc:  # negative: nothing in it to make invalid (GET /health takes no input)
            if mode is GenerationMode.POSITIVE:
                failures.append(f"{operation.label}: no valid request can be made: {exc}")
        except (Exception, BaseExceptionGroup) as exc:  # each operation's failures, not the first one's
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)
    if mode is GenerationMode.POSITIVE:  # the valid requests did reach the work, not only refusals
        for label in ACCEPTING:
            assert any(200 <= status < 300 for status in statuses[label]), (label, statuses[label])


def _exercise(operation, mode: GenerationMode, service: Service, statuses: set[int]) -> None:
    @seed(SEED)
    @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def send(case) -> None:
        if mode is GenerationMode.POSITIVE:
            ground(case, service)
        else:
            assume(not _a_form(case))
        statuses.add(case.call_and_validate(headers={"X-API-Key": API_KEY}).status_code)

    send()


# --- what a schema cannot say -------------------------------------------------------------------

def _a_form(case) -> bool:
    """Negative cases are judged on JSON bodies only. A multipart form has no types: every field
    is text or a file, a list is the field repeated (or absent when empty), so a "schema-violating"
    form is mostly a valid request on the wire and proves nothing (and schemathesis cannot always
    send its mutated file parts)."""
    return case.media_type == "multipart/form-data"



def ground(case, service: Service) -> None:
    """Make a valid request's runtime facts true: what it names exists, what it sends decodes."""
    route = f"{case.method} {case.path}"
    if isinstance(case.query, dict):
        case.query.pop("cursor", None)  # opaque: only a next_cursor this server handed out is one
    if route == "PUT /uploads/{upload_id}":  # an upload this server reserved
        case.path_parameters["upload_id"], _, _ = service.submitter.uploads.reserve("clip.mp4")
    for name in list(case.headers or {}):
        if name.lower() == "idempotency-key":  # a key names one request: generated requests reusing
            # one would rightly get 422 idempotency_key_reused, so each gets its own
            case.headers[name] = f"contract-{uuid.uuid4().hex}"
    body = case.body
    if not isinstance(body, dict):
        return
    if route in ("POST /jobs", "POST /submit-job"):
        _ground_job_request(body, service)
    if route == "POST /streams/snapshot":
        body["source_url"] = service.camera_video  # a schema cannot name a camera that answers
    if route == "POST /streams":
        body["source_url"] = CAMERA  # a schema cannot name a camera that answers
        _ground_params(body)
        if isinstance(body.get("end_at"), str):  # "in the future" depends on when it is sent
            body["end_at"] = (datetime.now(UTC) + timedelta(hours=1)).isoformat()


def _ground_job_request(body: dict[str, Any], service: Service) -> None:
    if "file" in body:  # what a file holds is known by decoding it, not by its schema (binary)
        body["file"] = PNG
    if "files" in body:
        body["files"] = [PNG for _ in body["files"]]
    if "upload_id" in body:  # an upload of this server, finished, not yet a job
        body["upload_id"] = _finished_upload(service)
    if "upload_ids" in body:
        body["upload_ids"] = [_finished_upload(service) for _ in body["upload_ids"]]
    for text_field in ("params", "classes", "lines", "zones"):  # JSON text in a form field: the schema
        if isinstance(body.get(text_field), str):  # types the text, not what it holds (the JSON body's
            del body[text_field]  # params, typed, cover the same parameters)
    if isinstance(body.get("params"), dict):
        _ground_params(body["params"])
    _ground_params(body)
    _ground_telemetry(body, service)


def _ground_telemetry(body: dict[str, Any], service: Service) -> None:
    """Flight telemetry goes with one video, sent one way, and holds an .SRT: a schema can say
    none of it. A request with telemetry becomes one for a video (the camera's clip) and its
    .SRT; its lines and zones go, as they would have to fit that video's frame."""
    if "telemetry" in body:
        body.pop("telemetry_upload_id", None)
    if "telemetry" not in body and "telemetry_upload_id" not in body:
        return
    if "files" in body or ("file" not in body and "upload_id" not in body):  # images, or no input at all
        body.pop("telemetry", None)
        body.pop("telemetry_upload_id", None)
        return
    video = (service.tmp / "camera.mp4").read_bytes()
    if "file" in body:
        body["file"] = video
    if "upload_id" in body:
        body["upload_id"] = _finished_upload(service, video, "clip.mp4")
    if "telemetry" in body:
        body["telemetry"] = SRT
    if "telemetry_upload_id" in body:
        body["telemetry_upload_id"] = _finished_upload(service, SRT, "DJI_0001.SRT")
    for params in (body, body.get("params")):
        if isinstance(params, dict):
            params.pop("lines", None)
            params.pop("zones", None)


def _ground_params(params: dict[str, Any]) -> None:
    """Job parameters: the rules JSON Schema cannot express, and the ones that depend on the
    service's settings or on the network."""
    params.pop("callback_url", None)  # must resolve to a public address: the network decides
    params.pop("model_id", None)  # only where ALLOW_MODEL_OVERRIDE is set
    if "events" in params:
        params["events"] = False  # needs a callback_url
    for kind in ("lines", "zones"):
        items = params.get(kind)
        if isinstance(items, list):
            # names unique once the unnamed are named line-1, line-2...; a line's two ends apart
            names = [item.get("name") or f"{kind[:-1]}-{number}" for number, item in enumerate(items, 1)]
            assume(len(set(names)) == len(names))
            assume(all(item.get("start") != item.get("end") for item in items if kind == "lines"))
            for item in items:  # "relative": 0..1 and videos only, beyond a schema; pixels fit any frame
                if isinstance(item, dict):  # of a stream, and images jobs (these are PNGs) have none
                    item.pop("units", None)


def _finished_upload(service: Service, data: bytes = PNG, filename: str = "still.png") -> str:
    upload_id, _, _ = service.submitter.uploads.reserve(filename)
    source = service.tmp / filename
    source.write_bytes(data)
    service.backends.blobs.upload_file(upload_data_path(upload_id), source)
    return upload_id


# --- the schema's own promises, read directly ----------------------------------------------------


@pytest.fixture(scope="module")
def published(service: Service) -> dict[str, Any]:
    with TestClient(create_app(service.settings, service.backends)) as client:
        return client.get("/openapi.json").json()


def test_each_route_documents_its_own_errors(published: dict[str, Any]) -> None:
    paths = published["paths"]
    assert set(paths["/jobs"]["get"]["responses"]) == {"200", "401", "422", "503"}  # no upload: no 413
    assert "413" in paths["/jobs"]["post"]["responses"] and "413" in paths["/streams"]["post"]["responses"]
    assert "409" in paths["/jobs/{job_id}/result"]["get"]["responses"]  # not ready yet
    assert "409" not in paths["/jobs/{job_id}"]["get"]["responses"]
    deleting = paths["/jobs/{job_id}"]["delete"]["responses"]
    assert deleting["202"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/JobOut"}
    assert "204" in deleting
    for path, operations in paths.items():
        for method, operation in operations.items():
            for status, answer in operation["responses"].items():
                if status.startswith(("4", "5")):  # every error in the one shape the API answers with
                    schema = answer["content"]["application/json"]["schema"]
                    assert schema.get("$ref", "").endswith(("/ErrorBody", "/Health", "/Readiness")), (
                        method, path, status)


def test_the_job_form_documents_every_parameter_the_api_takes(published: dict[str, Any]) -> None:
    form = published["paths"]["/jobs"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    inputs = {"file", "files", "upload_id", "params", "telemetry", "telemetry_upload_id"}
    assert set(JobParams.model_fields) | inputs == set(form["properties"])
    assert form["properties"]["telemetry"]["format"] == "binary"
    assert form["properties"]["frame_stride"] == {**form["properties"]["frame_stride"], "minimum": 1,
                                                  "maximum": 1000, "type": "integer"}
    assert form["properties"]["tracker"]["enum"] == ["botsort", "bytetrack"]
    assert form["properties"]["files"]["items"]["format"] == "binary"
    assert re.fullmatch(form["properties"]["tiling"]["pattern"], "640x640")


def test_the_stream_body_admits_its_own_example(published: dict[str, Any]) -> None:
    """The example of the docs is valid by the schema, and the schema refuses what the API refuses."""
    content = published["paths"]["/streams"]["post"]["requestBody"]["content"]["application/json"]
    validator = Draft202012Validator(content["schema"])
    assert list(validator.iter_errors(content["example"])) == []
    for refused in ({"source_url": CAMERA, "frame_stride": 2}, {"source_url": "file:///etc/passwd"},
                    {"source_url": CAMERA, "window_s": 1}, {}):
        assert not validator.is_valid(refused), json.dumps(refused)


def test_the_tiling_pattern_admits_only_what_the_api_accepts() -> None:
    """The pattern is written out by hand (JSON Schema has no number ranges inside strings):
    every side it admits, parse_tiling accepts, and every size it accepts in the lower-case form,
    the pattern admits."""
    for side in [*range(0, 130), *range(990, 1010), *range(7990, 8300), 99999]:
        text = f"{side}x640"
        try:
            parse_tiling(text)
            accepted = True
        except InvalidInput:
            accepted = False
        assert bool(re.fullmatch(TILING_PATTERN, text)) is accepted, text
        assert bool(re.fullmatch(TILING_PATTERN, f"640x{side}")) is accepted, text
