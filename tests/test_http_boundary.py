"""The HTTP boundary, table-driven: each bad input a row (input -> status and error code),
sent over real sockets to a real ``uvicorn api.main:app`` process on the local backend.

No worker runs here: a row that is refused must leave nothing recorded, queued or stored, and
a row that is accepted must hold parameters the worker's own checks accept (docs/api.md's
``lines=x1,y1,x2,y2;x1,y1,x2,y2`` used to be accepted here and then fail in the worker).
"""

from __future__ import annotations

import json
import socket
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from ipaddress import ip_address
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from api.params import check_params
from core.backends import Backends, build_backends
from core.config import Settings
from core.jobs import MAX_LINES, MAX_POLYGON_POINTS, MAX_ZONES, Job, JobParams, new_job_id
from core.netpolicy import is_public_address
from core.scratch import OWNER_SUFFIX
from tests.fixtures_service import Process, free_port, settings_env
from tests.fixtures_stills import image_bytes, truncated_tiff, zip_of
from tests.fixtures_telemetry import dji_srt
from tests.waiting import answers, wait_until

STALL_TIMEOUT_S = 1.5  # UPLOAD_STALL_TIMEOUT_S of the server under test
MAX_UPLOAD_BYTES = 2_000_000
DEEP = 30_000  # levels of nesting that still fit in one 64 KiB form field
DEEP_LIST = "[" * DEEP + "]" * DEEP
SOCKET_TIMEOUT_S = 20.0  # far past the stall timeout: a server that never answers fails the row
MAX_FILES = 12  # MAX_FILES_PER_JOB of the server under test
MAX_ZIP_ENTRIES = 20
MAX_RASTER_PIXELS = 200 * 200
MAX_JOB_PIXELS = 60_000
MAX_TELEMETRY_BYTES = 100_000


@dataclass
class Server:
    url: str
    client: httpx.Client
    backends: Backends  # the same data directory the server uses, to see what it stored
    data_dir: Path
    scratch_dir: Path
    clip: Path
    upload_id: str  # a reserved direct upload (so uploads/ exists on disk)
    finished_upload_id: str  # a direct upload with the video in it: only a bad request can fail it


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, small_clip: Path) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("boundary")
    settings = Settings(_env_file=None, storage_backend="local", data_dir=tmp / "data",  # type: ignore[call-arg]
                        max_upload_bytes=MAX_UPLOAD_BYTES, upload_stall_timeout_s=STALL_TIMEOUT_S,
                        log_format="text", max_files_per_job=MAX_FILES, max_zip_entries=MAX_ZIP_ENTRIES,
                        max_raster_pixels=MAX_RASTER_PIXELS, max_job_pixels=MAX_JOB_PIXELS,
                        max_telemetry_bytes=MAX_TELEMETRY_BYTES)
    port = free_port()
    api = Process("api", [sys.executable, "-m", "uvicorn", "api.main:app", "--host", "127.0.0.1",
                          "--port", str(port)], settings_env(settings), tmp / "api.log")
    url = f"http://127.0.0.1:{port}"
    backends = build_backends(settings)
    try:
        wait_until(lambda: answers(f"{url}/health") or api.popen.poll() is not None, 60,
                   "the API to answer /health")
        assert api.popen.poll() is None, f"API exited at start:\n{api.log()}"
        with httpx.Client(base_url=url, timeout=SOCKET_TIMEOUT_S) as client:
            reserved, finished = (client.post("/uploads", json={"filename": "clip.mp4"}).json()["upload_id"]
                                  for _ in range(2))
            put = client.put(f"/uploads/{finished}", content=small_clip.read_bytes())
            assert put.status_code == 201, put.text
            yield Server(url, client, backends, settings.data_dir, settings.data_dir / "tmp", small_clip,
                         reserved, finished)
    finally:
        api.stop()
        backends.close()


# --- sending: httpx for whole requests, a raw socket for bodies that stop half-way ---------------


@dataclass
class Answer:
    status: int
    body: dict[str, Any]
    text: str
    elapsed_s: float
    headers: httpx.Headers = field(default_factory=httpx.Headers)


def _answer(response: httpx.Response, started: float) -> Answer:
    try:
        body = response.json()
    except ValueError:
        body = {}
    return Answer(response.status_code, body, response.text, time.monotonic() - started, response.headers)


def post_form(**fields: str) -> Callable[[Server], Answer]:
    """POST /jobs with the small test video and these form fields."""

    def send(server: Server) -> Answer:
        started = time.monotonic()
        with server.clip.open("rb") as video:
            response = server.client.post("/jobs", files={"file": ("clip.mp4", video)}, data=fields)
        return _answer(response, started)

    return send


def post_fields(**fields: str) -> Callable[[Server], Answer]:
    """POST /jobs as multipart/form-data without a video (e.g. naming a direct upload instead)."""

    def send(server: Server) -> Answer:
        started = time.monotonic()
        parts = {name: (None, value) for name, value in fields.items()}  # no filename: plain fields
        return _answer(server.client.post("/jobs", files=parts), started)

    return send


def post_files(*files: tuple[str, bytes], **fields: str) -> Callable[[Server], Answer]:
    """POST /jobs with these (name, bytes) files, each a part of the multipart field 'files'."""

    def send(server: Server) -> Answer:
        started = time.monotonic()
        parts = [("files", (name, data)) for name, data in files]
        return _answer(server.client.post("/jobs", files=parts, data=fields), started)

    return send


FINISHED_UPLOAD = "<finished upload>"  # in a JSON body: replaced by the id of an upload holding the video


def post_json(body: str) -> Callable[[Server], Answer]:
    def send(server: Server) -> Answer:
        started = time.monotonic()
        content = body.replace(FINISHED_UPLOAD, server.finished_upload_id)
        response = server.client.post("/jobs", content=content, headers={"content-type": "application/json"})
        return _answer(response, started)

    return send


def request(method: str, path: str, content: bytes = b"", **headers: str) -> Callable[[Server], Answer]:
    def send(server: Server) -> Answer:
        started = time.monotonic()
        return _answer(server.client.request(method, path.format(upload_id=server.upload_id), content=content,
                                             headers=headers), started)

    return send


def send_then_stall(
    method: str, path: str, content_type: str, declared: int, sent: bytes
) -> Callable[[Server], Answer]:
    """Declare ``declared`` body bytes, send ``sent`` and then nothing, keeping the socket open
    (a client on a dead mobile link); read whatever the server answers."""

    def send(server: Server) -> Answer:
        address = urlsplit(server.url)
        head = (f"{method} {path.format(upload_id=server.upload_id)} HTTP/1.1\r\nHost: {address.netloc}\r\n"
                f"Content-Type: {content_type}\r\nContent-Length: {declared}\r\n\r\n").encode()
        started = time.monotonic()
        with socket.create_connection((address.hostname, address.port), timeout=SOCKET_TIMEOUT_S) as sock:
            sock.sendall(head + sent)
            received = b""
            while chunk := sock.recv(65536):  # the server closes the connection after its answer
                received += chunk
        elapsed = time.monotonic() - started
        status_line, _, rest = received.partition(b"\r\n")
        body = rest.partition(b"\r\n\r\n")[2]
        return Answer(int(status_line.split()[1]), json.loads(body), body.decode(), elapsed)

    return send


def multipart_head(boundary: str = "b0undary") -> tuple[str, bytes]:
    content_type = f"multipart/form-data; boundary={boundary}"
    part = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"clip.mp4\"\r\n"
            "Content-Type: video/mp4\r\n\r\n").encode()
    return content_type, part


# --- the table ---------------------------------------------------------------------------------


@dataclass
class Row:
    id: str
    send: Callable[[Server], Answer]
    status: int
    code: str | None  # None for an accepted request
    check: Callable[[Answer], None] | None = None


def _names(kind: str, expected: list[str]) -> Callable[[Answer], None]:
    def check(answer: Answer) -> None:
        assert [item["name"] for item in answer.body["params"][kind]] == expected

    return check


def _took_the_stall_timeout(answer: Answer) -> None:
    # answered because the body stalled, not at once for some other reason
    assert answer.elapsed_s >= STALL_TIMEOUT_S * 0.9, answer
    assert "UPLOAD_STALL_TIMEOUT_S" in answer.body["error"]["message"]


def _message_has(*parts: str) -> Callable[[Answer], None]:
    def check(answer: Answer) -> None:
        message = answer.body["error"]["message"]
        assert all(part in message for part in parts), message

    return check


def _params_are(kind: str, expected: list[dict[str, Any]]) -> Callable[[Answer], None]:
    def check(answer: Answer) -> None:
        assert answer.body["params"][kind] == expected  # pixels, and no "units" left to misread

    return check


def _square_at(x: float, size: float) -> list[list[float]]:
    return [[x, 0], [x + size, 0], [x + size, size], [x, size]]


LINE = {"start": [0, 0], "end": [10, 10]}
FAR_LINE = {"start": [0, 300], "end": [320, 300]}
ZONE = {"polygon": [[0, 0], [10, 0], [10, 10]]}
MULTIPART, FILE_PART = multipart_head()
JSON = {"content-type": "application/json"}
LONG_ID = "a" * 300  # over the 255 bytes a file name may have


def named(name: str, item: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, **item}


ROWS = [
    # deeply nested JSON, in each field that takes JSON and in the JSON bodies
    Row("lines nested 30000 deep", post_form(lines=DEEP_LIST), 422, "invalid_input"),
    Row("zones nested 30000 deep", post_form(zones=DEEP_LIST), 422, "invalid_input"),
    Row("classes nested 30000 deep", post_form(classes=DEEP_LIST), 422, "invalid_input"),
    Row("params nested 30000 deep", post_form(params='{"lines": ' + DEEP_LIST + "}"), 422, "invalid_input"),
    Row("JSON body nested 30000 deep",
        post_json('{"upload_id": "x", "params": ' + '{"a": ' * DEEP + "1" + "}" * DEEP + "}"),
        422, "invalid_input"),
    Row("POST /uploads body nested 5000 deep",
        request("POST", "/uploads", b'{"filename": ' + b"[" * 5000 + b"]" * 5000 + b"}", **JSON),
        422, "invalid_input"),
    Row("JSON body params not an object",
        post_json(json.dumps({"upload_id": FINISHED_UPLOAD, "params": [1]})), 422, "invalid_input"),
    Row("JSON body upload_id not a string", post_json('{"upload_id": ["x"]}'), 422, "invalid_input"),
    # docs/api.md's own syntax, and unnamed zones: default names, and the worker accepts them
    Row("documented multi-line syntax", post_form(lines="0,100,320,100;0,200,320,200"), 202, None,
        _names("lines", ["line-1", "line-2"])),
    Row("two unnamed zones", post_form(zones=json.dumps([ZONE, ZONE])), 202, None,
        _names("zones", ["zone-1", "zone-2"])),
    Row("named and unnamed lines", post_form(lines=json.dumps([named("gate", LINE), LINE])), 202, None,
        _names("lines", ["gate", "line-2"])),
    # what the worker would refuse is refused at submit
    Row("repeated line names", post_form(lines=json.dumps([named("gate", LINE), named("gate", LINE)])),
        422, "invalid_input"),
    Row("a name clashing with a default name", post_form(lines=json.dumps([named("line-2", LINE), LINE])),
        422, "invalid_input"),
    Row("repeated zone names",
        post_form(params=json.dumps({"zones": [named("pen", ZONE), named("pen", ZONE)]})),
        422, "invalid_input"),
    Row("repeated names in the JSON body",
        post_json(json.dumps({"upload_id": FINISHED_UPLOAD, "params": {"lines": [named("a", LINE)] * 2}})),
        422, "invalid_input"),
    # lines and zones must lie in the video's frame (the clip is 320x240), in pixels or "relative" 0..1
    Row("a line below the frame", post_form(lines="0,5000,100,5000"), 422, "invalid_input",
        _message_has("line 'line-1'", "(0, 5000)", "320x240")),
    Row("a zone past the frame's right edge", post_form(zones=json.dumps([named("pen", {"polygon": _square_at(300, 40)})])),
        422, "invalid_input", _message_has("zone 'pen'", "(340, 0)", "320x240")),
    Row("a line outside the frame of a direct upload",
        post_json(json.dumps({"upload_id": FINISHED_UPLOAD, "params": {"lines": [named("far", FAR_LINE)]}})),
        422, "invalid_input", _message_has("line 'far'", "320x240")),
    Row("a relative line becomes source pixels",
        post_form(lines=json.dumps([{"start": [0, 0.5], "end": [1, 0.5], "units": "relative"}])), 202, None,
        _params_are("lines", [{"name": "line-1", "start": [0, 120], "end": [320, 120]}])),
    Row("a relative zone becomes source pixels",
        post_form(zones=json.dumps([{"polygon": [[0, 0], [0.5, 0], [0.5, 0.25]], "units": "relative"}])), 202,
        None, _params_are("zones", [{"name": "zone-1", "polygon": [[0, 0], [160, 0], [160, 60]]}])),
    Row("relative coordinates past 1", post_form(lines=json.dumps([{**LINE, "units": "relative"}])),
        422, "invalid_input", _message_has("between 0 and 1")),
    Row("unknown units", post_form(lines=json.dumps([{**LINE, "units": "percent"}])), 422, "invalid_input"),
    Row("relative units on a stream",
        request("POST", "/streams", json.dumps({"source_url": "rtsp://8.8.8.8/cam", "lines": [
            {"start": [0, 0.5], "end": [1, 0.5], "units": "relative"}]}).encode(), **JSON),
        422, "invalid_input", _message_has("videos only")),
    # more 500s that must be 422s
    Row("callback host label over 63 characters",
        post_form(callback_url=f"http://{'a' * 64}.example.com/hook"), 422, "invalid_input"),
    Row("multipart boundary over 256 characters",
        request("POST", "/jobs", b"--" + b"b" * 300 + b"--\r\n",
                **{"content-type": "multipart/form-data; boundary=" + "b" * 300}),
        422, "invalid_input"),
    Row("upload_id over 255 characters (JSON)", post_json(json.dumps({"upload_id": LONG_ID})),
        422, "invalid_input"),
    Row("upload_id over 255 characters (form)", post_fields(upload_id=LONG_ID), 422, "invalid_input"),
    Row("upload_id over 255 characters (PUT)", request("PUT", f"/uploads/{LONG_ID}", b"x"),
        422, "invalid_input"),
    # stalled uploads: 408 after UPLOAD_STALL_TIMEOUT_S, nothing stored
    Row("multipart declaring 1.5 MB, sending 1 KB",
        send_then_stall("POST", "/jobs", MULTIPART, 1_500_000, FILE_PART + b"\0" * 1024),
        408, "upload_stalled", _took_the_stall_timeout),
    Row("direct-upload PUT declaring 1.5 MB, sending 1 KB",
        send_then_stall("PUT", "/uploads/{upload_id}", "application/octet-stream", 1_500_000, b"\0" * 1024),
        408, "upload_stalled", _took_the_stall_timeout),
    Row("JSON body declaring 1 KB, sending 10 bytes",
        send_then_stall("POST", "/jobs", "application/json", 1024, b'{"upload_'),
        408, "upload_stalled", _took_the_stall_timeout),
    Row("POST /uploads body declaring 1 KB, sending 10 bytes",
        send_then_stall("POST", "/uploads", "application/json", 1024, b'{"filename'),
        408, "upload_stalled", _took_the_stall_timeout),
    Row("POST /streams/snapshot body declaring 1 KB, sending 10 bytes",
        send_then_stall("POST", "/streams/snapshot", "application/json", 1024, b'{"source_'),
        408, "upload_stalled", _took_the_stall_timeout),
    # a snapshot connects to the camera from the API: the same policy as POST /streams, before any connection
    Row("snapshot of a loopback camera outside STREAM_ALLOWED_NETWORKS",
        request("POST", "/streams/snapshot", json.dumps({"source_url": "rtsp://127.0.0.1:9/cam"}).encode(), **JSON),
        422, "stream_source_not_allowed"),
    Row("snapshot of a file:// URL",
        request("POST", "/streams/snapshot", json.dumps({"source_url": "file:///etc/passwd"}).encode(), **JSON),
        422, "invalid_input", _message_has("rtsp://")),
    Row("snapshot with stream parameters",
        request("POST", "/streams/snapshot", json.dumps({"source_url": "rtsp://8.8.8.8/cam", "window_s": 60}).encode(),
                **JSON),
        422, "invalid_input", _message_has("window_s", "only source_url")),
]



def _allows(methods: str) -> Callable[[Answer], None]:
    def check(answer: Answer) -> None:
        assert answer.headers["allow"] == methods, answer.headers
        assert methods in answer.body["error"]["message"]  # the message names what to use instead

    return check


# a known path asked with a method it does not take: 405 naming the path's methods, even though
# the dashboard's files, mounted at /, answer every request no API route took
ROWS += [
    Row("GET on POST-only /uploads", request("GET", "/uploads"), 405, "method_not_allowed", _allows("POST")),
    Row("GET on POST-only /streams", request("GET", "/streams"), 405, "method_not_allowed", _allows("POST")),
    Row("GET on POST-only /streams/snapshot", request("GET", "/streams/snapshot"), 405, "method_not_allowed",
        _allows("POST")),
    Row("GET on POST-only /jobs/{id}/links", request("GET", "/jobs/abc/links"), 405, "method_not_allowed",
        _allows("POST")),
    Row("GET on PUT-only /uploads/{id}", request("GET", "/uploads/{upload_id}"), 405, "method_not_allowed",
        _allows("PUT")),
    Row("PUT on /jobs", request("PUT", "/jobs"), 405, "method_not_allowed", _allows("GET, POST")),
    Row("PATCH on /jobs/{id}", request("PATCH", "/jobs/abc"), 405, "method_not_allowed", _allows("DELETE, GET")),
    Row("POST on GET-only /health", request("POST", "/health"), 405, "method_not_allowed", _allows("GET")),
    Row("an unknown path is still 404", request("GET", "/no-such-page"), 404, "not_found"),
    Row("PUT to an upload id never handed out", request("PUT", "/uploads/never-reserved", b"x"), 404, "not_found"),
]

# --- images, ZIPs and rasters: 4xx at submit where it can be known there ----------------
PNG = image_bytes("PNG", 64, 48)
ZERO_BAND_TIFF = bytearray(image_bytes("GTiff", 32, 32))


def _zero_samples_per_pixel(tiff: bytearray) -> bytes:
    """A little-endian TIFF with its SamplesPerPixel tag (277) set to 0: a raster of 0 bands."""
    import struct

    ifd = struct.unpack("<I", tiff[4:8])[0]
    for i in range(struct.unpack("<H", tiff[ifd:ifd + 2])[0]):
        entry = ifd + 2 + 12 * i
        if struct.unpack("<H", tiff[entry:entry + 2])[0] == 277:
            tiff[entry + 8:entry + 10] = struct.pack("<H", 0)
    return bytes(tiff)


def _says(*words: str, absent: str | None = None) -> Callable[[Answer], None]:
    def check(answer: Answer) -> None:
        message = answer.body["error"]["message"]
        assert all(word in message for word in words), message
        assert absent is None or absent not in message, message

    return check


def _kind_and_files(kind: str, total: int, failed: int) -> Callable[[Answer], None]:
    def check(answer: Answer) -> None:
        assert (answer.body["kind"], answer.body["files_total"], answer.body["files_failed"]) == (kind, total, failed)

    return check


ROWS += [
    # one file alone: known at submit, so refused there
    Row("a PNG alone is an images job (no longer 415)", post_files(("one.png", PNG)), 202, None,
        _kind_and_files("images", 1, 0)),
    Row("a corrupt TIFF alone", post_files(("cut.tif", truncated_tiff())), 415, "corrupt_image"),
    Row("a TIFF with 0 bands", post_files(("empty.tif", _zero_samples_per_pixel(ZERO_BAND_TIFF))),
        415, "raster_no_bands"),
    Row("an image over MAX_RASTER_PIXELS", post_files(("huge.png", image_bytes("PNG", 201, 200))),
        422, "raster_too_large"),
    Row("an empty image", post_files(("nothing.png", b"")), 422, "empty_file"),
    # bulk: some bad files are partial results (listed with their errors), none good is a 422
    Row("bulk upload with a non-image mixed in", post_files(("a.png", PNG), ("notes.txt", b"hello"), ("b.png", PNG)),
        202, None, _kind_and_files("images", 3, 1)),
    Row("bulk upload of non-images only", post_files(("a.txt", b"hello"), ("b.csv", b"1,2")), 422, "no_usable_files"),
    Row("more files than MAX_FILES_PER_JOB", post_files(*[(f"{i}.png", PNG) for i in range(MAX_FILES + 1)]),
        422, "too_many_files"),
    # ZIPs: refused whole for what breaks a rule, before anything is queued
    Row("an empty ZIP", post_files(("empty.zip", zip_of({}))), 422, "empty_zip"),
    Row("a ZIP of folders only", post_files(("dirs.zip", zip_of({"a/": b"", "a/b/": b""}))), 422, "empty_zip"),
    Row("a ZIP holding ../x", post_files(("evil.zip", zip_of({"ok.png": PNG, "../x.png": PNG}))),
        422, "unsafe_zip_path"),
    Row("a ZIP holding an absolute path", post_files(("abs.zip", zip_of({"/etc/x.png": PNG}))), 422, "unsafe_zip_path"),
    Row("a ZIP holding a drive letter", post_files(("win.zip", zip_of({"C:/x.png": PNG}))), 422, "unsafe_zip_path"),
    Row("a ZIP bomb (one entry packed 1000:1)",
        post_files(("bomb.zip", zip_of({"zeros.png": bytes(50_000_000)}, zipfile.ZIP_DEFLATED))), 422, "zip_bomb"),
    Row("a ZIP inside the ZIP", post_files(("nested.zip", zip_of({"inner.zip": zip_of({"a.png": PNG})}))),
        422, "bad_zip"),
    Row("a ZIP inside the ZIP, renamed", post_files(("nested.zip", zip_of({"inner.png": zip_of({"a.png": PNG})}))),
        422, "bad_zip"),
    Row("a ZIP with more entries than MAX_ZIP_ENTRIES",
        post_files(("many.zip", zip_of({f"{i}.png": b"x" for i in range(MAX_ZIP_ENTRIES + 1)}))), 422, "too_many_files"),
    Row("a damaged ZIP", post_files(("cut.zip", zip_of({"a.png": PNG})[:200])), 422, "bad_zip"),
    Row("a ZIP of small entries packed 1000:1 together (each too small for its own ratio)",
        post_files(("zeros.zip", zip_of({f"{i}.png": bytes(1024 * 1024) for i in range(MAX_ZIP_ENTRIES)},
                                        zipfile.ZIP_DEFLATED))), 422, "zip_bomb", _says("all entries together")),
    Row("a ZIP of no image names its entries, not scratch files",
        post_files(("notes.zip", zip_of({"notes.txt": b"hi", "docs/readme.md": b"x"}))), 422, "no_usable_files",
        _says("notes.txt: ", "docs_readme.md: ", absent="entry-")),
    Row("two images together over MAX_JOB_PIXELS", post_files(*[(f"{n}.png", image_bytes("PNG", 200, 200))
                                                                  for n in "ab"]),
        422, "job_too_large", _says("MAX_JOB_PIXELS", "b.png")),
    Row("a ZIP of images together over MAX_JOB_PIXELS",
        post_files(("set.zip", zip_of({f"{n}.png": image_bytes("PNG", 200, 200) for n in "abc"}))),
        422, "job_too_large", _says("MAX_JOB_PIXELS")),
    Row("a ZIP with a non-image mixed in", post_files(("set.zip", zip_of({"a.png": PNG, "readme.txt": b"hi"}))),
        202, None, _kind_and_files("images", 2, 1)),
    # direct-upload ids
    Row("upload_ids not a list", post_json('{"upload_ids": "abc"}'), 422, "invalid_input"),
    Row("upload_ids empty", post_json('{"upload_ids": []}'), 422, "invalid_input"),
    Row("upload_ids naming an unknown upload", post_json('{"upload_ids": ["nope"]}'), 422, "invalid_input"),
    Row("upload_ids naming one upload twice",
        post_json(json.dumps({"upload_ids": [FINISHED_UPLOAD, FINISHED_UPLOAD]})), 422, "invalid_input"),
]

# --- flight telemetry (a drone's .SRT) beside a video: checked at submit, video jobs only ------------
SRT = dji_srt(frames=20, fps=10.0).encode()
CLIP = b"<the test video>"  # a part's or a ZIP entry's bytes: replaced by the small clip's when sent


def post_parts(*parts: tuple[str, str, bytes], **fields: str) -> Callable[[Server], Answer]:
    """POST /jobs with these multipart file parts: (field, file name, bytes), CLIP for the test video."""

    def send(server: Server) -> Answer:
        started = time.monotonic()
        files = [(field, (name, server.clip.read_bytes() if data is CLIP else data)) for field, name, data in parts]
        return _answer(server.client.post("/jobs", files=files, data=fields), started)

    return send


def post_with_telemetry(name: str, data: bytes, **fields: str) -> Callable[[Server], Answer]:
    """POST /jobs with the small test video and this file in the multipart field 'telemetry'."""
    return post_parts(("file", "clip.mp4", CLIP), ("telemetry", name, data), **fields)


def post_zip(entries: dict[str, bytes], *more: tuple[str, str, bytes]) -> Callable[[Server], Answer]:
    """POST /jobs with one ZIP of these entries (CLIP: the test video), and ``more`` parts."""

    def send(server: Server) -> Answer:
        packed = zip_of({name: server.clip.read_bytes() if data is CLIP else data for name, data in entries.items()})
        return post_parts(("file", "flight.zip", packed), *more)(server)

    return send


def _a_video_job_with_telemetry(filename: str, telemetry: str | None) -> Callable[[Answer], None]:
    def check(answer: Answer) -> None:
        assert (answer.body["kind"], answer.body["filename"], answer.body["telemetry"]) == (
            "video", filename, telemetry)

    return check


ROWS += [
    Row("telemetry beside a video", post_with_telemetry("DJI_0001.SRT", SRT), 202, None,
        _a_video_job_with_telemetry("clip.mp4", "DJI_0001.SRT")),
    Row("telemetry that is not text", post_with_telemetry("DJI_0001.SRT", PNG), 422, "invalid_telemetry",
        _says("telemetry: DJI_0001.SRT: not a text file")),
    Row("telemetry that is text but no subtitle file", post_with_telemetry("notes.srt", b"lat 52.1 lon 5.6\n" * 9),
        422, "invalid_telemetry", _says("telemetry: notes.srt", "no timing line")),
    Row("empty telemetry", post_with_telemetry("DJI_0001.SRT", b""), 422, "invalid_telemetry",
        _says("telemetry: DJI_0001.SRT: the file is empty")),
    Row("telemetry over MAX_TELEMETRY_BYTES",
        post_with_telemetry("big.srt", SRT * (MAX_TELEMETRY_BYTES // len(SRT) + 1)), 413, "upload_too_large",
        _says("telemetry:", "MAX_TELEMETRY_BYTES")),
    Row("two telemetry files",
        post_parts(("file", "clip.mp4", CLIP), ("telemetry", "a.srt", SRT), ("telemetry", "b.srt", SRT)),
        422, "invalid_input", _says("send one telemetry file")),
    Row("telemetry with an image (a plain field)", post_files(("one.png", PNG), telemetry=SRT.decode()), 422,
        "invalid_telemetry", _says("telemetry:", "images job")),
    Row("telemetry file and telemetry_upload_id both",
        post_with_telemetry("DJI_0001.SRT", SRT, telemetry_upload_id="someupload"), 422, "invalid_telemetry",
        _says("one way, not both")),
    # a ZIP of one video and its .SRT is a video job with telemetry; any other mix with a video is refused
    Row("a ZIP of a video and its .SRT", post_zip({"DJI_0001.MP4": CLIP, "DJI_0001.SRT": SRT}), 202, None,
        _a_video_job_with_telemetry("DJI_0001.MP4", "DJI_0001.SRT")),
    Row("a ZIP of a video alone", post_zip({"flight/DJI_0001.MP4": CLIP}), 202, None,
        _a_video_job_with_telemetry("DJI_0001.MP4", None)),
    Row("a ZIP of a video and images", post_zip({"DJI_0001.MP4": CLIP, "a.png": PNG, "b.png": PNG}),
        422, "invalid_input", _says("the video DJI_0001.MP4 and 2 other files (a.png, b.png)")),
    Row("a ZIP of two videos", post_zip({"DJI_0001.MP4": CLIP, "DJI_0002.MP4": CLIP, "DJI_0001.SRT": SRT}),
        422, "invalid_input", _says("2 videos (DJI_0001.MP4, DJI_0002.MP4)")),
    Row("a ZIP of a .SRT and images", post_zip({"DJI_0001.SRT": SRT, "a.png": PNG}), 422, "invalid_input",
        _says("DJI_0001.SRT but no video")),
    Row("a ZIP of a video and two .SRT", post_zip({"DJI_0001.MP4": CLIP, "a.SRT": SRT, "b.srt": SRT}),
        422, "invalid_input", _says("2 .SRT files")),
    Row("a ZIP whose video is an image", post_zip({"DJI_0001.MP4": PNG, "DJI_0001.SRT": SRT}), 415,
        "not_a_video", _says("DJI_0001.MP4 in the ZIP is not a video")),
    Row("a ZIP whose .SRT is not text", post_zip({"DJI_0001.MP4": CLIP, "DJI_0001.SRT": PNG}), 422,
        "invalid_telemetry", _says("file: DJI_0001.SRT: not a text file")),
    Row("a ZIP holding a .SRT, and telemetry beside it",
        post_zip({"DJI_0001.MP4": CLIP, "DJI_0001.SRT": SRT}, ("telemetry", "DJI_0001.SRT", SRT)), 422,
        "invalid_telemetry", _says("telemetry: the ZIP holds the video's telemetry already")),
    # the direct-upload path: telemetry_upload_id beside upload_id
    Row("telemetry_upload_id naming an unknown upload",
        post_json(json.dumps({"upload_id": FINISHED_UPLOAD, "telemetry_upload_id": "nope"})), 422,
        "invalid_input", _says("telemetry_upload_id: unknown upload 'nope'")),
    Row("telemetry_upload_id not a string",
        post_json(json.dumps({"upload_id": FINISHED_UPLOAD, "telemetry_upload_id": 7})), 422, "invalid_input",
        _says("telemetry_upload_id")),
    Row("telemetry_upload_id naming the video's own upload (not text)",
        post_json(json.dumps({"upload_id": FINISHED_UPLOAD, "telemetry_upload_id": FINISHED_UPLOAD})), 422,
        "invalid_telemetry", _says("telemetry_upload_id:", "not a text file")),
    Row("telemetry_upload_id with upload_ids (images)",
        post_json(json.dumps({"upload_ids": [FINISHED_UPLOAD], "telemetry_upload_id": FINISHED_UPLOAD})), 422,
        "invalid_telemetry", _says("images job")),
]

# SSRF: each way of writing a non-public address in a callback_url (literal IPs: no DNS needed)
REFUSED_CALLBACK_HOSTS = [
    "[64:ff9b::7f00:1]",  # NAT64 of 127.0.0.1
    "[64:ff9b:1::a00:1]",  # NAT64 local-use prefix
    "[2002:7f00:1::]",  # 6to4 of 127.0.0.1
    "[::7f00:1]",  # IPv4-compatible 127.0.0.1
    "[::ffff:127.0.0.1]",  # IPv4-mapped
    "[::ffff:169.254.169.254]",  # IPv4-mapped cloud metadata service
    "[::ffff:0:127.0.0.1]",  # SIIT IPv4-translated 127.0.0.1
    "[::ffff:0:a9fe:a9fe]",  # SIIT IPv4-translated cloud metadata service
    "[fec0::1]",  # site-local (deprecated, still routed inside some networks)
    "[2001:0:4136:e378:8000:63bf:3fff:fdd2]",  # Teredo
    "224.0.0.1",  # IPv4 multicast
    "[ff0e::1]",  # IPv6 global-scope multicast
    "127.0.0.1",
    "10.1.2.3",
    "169.254.169.254",
]
ROWS += [Row(f"callback_url to {host}", post_form(callback_url=f"http://{host}/hook"), 422, "invalid_input")
         for host in REFUSED_CALLBACK_HOSTS]


def _job_ids(server: Server) -> set[str]:
    return {job.id for job in server.backends.jobs.list(limit=200).jobs}


def _stored(server: Server) -> set[str]:
    return {blob.path for blob in server.backends.blobs.list("")}


def _scratch_files(server: Server) -> list[Path]:
    """Files left in the API's scratch space, less the process folder's lock (core/scratch.py)."""
    if not server.scratch_dir.exists():
        return []
    return [p for p in server.scratch_dir.rglob("*") if p.is_file() and not p.name.endswith(OWNER_SUFFIX)]


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_http_boundary(server: Server, row: Row) -> None:
    jobs_before, stored_before = _job_ids(server), _stored(server)
    answer = row.send(server)
    assert answer.status == row.status, answer.text
    if row.check is not None:
        row.check(answer)
    if row.code is not None:
        assert answer.body["error"]["code"] == row.code, answer.text
        assert answer.body["error"]["message"], answer.text
        # refused: nothing recorded, queued, stored, or left in the scratch folder
        assert _job_ids(server) == jobs_before
        assert _stored(server) == stored_before
        assert _scratch_files(server) == []
        assert str(server.data_dir) not in answer.text  # never a server path in an answer
        return
    _assert_the_worker_accepts(answer.body["params"])
    assert server.client.delete(f"/jobs/{answer.body['job_id']}").status_code in (202, 204)


def _assert_the_worker_accepts(params: dict[str, Any]) -> None:
    """What the worker does with a job's parameters before it touches the video."""
    from ml_engine.counting import CountingConfig  # the worker's modules (torch-free, but not the API's)
    from worker.job_settings import pipeline_config

    config = pipeline_config(JobParams.model_validate(params), Settings(_env_file=None))  # type: ignore[call-arg]
    CountingConfig(fps=25.0, lines=config.lines, zones=config.zones, tracker=config.tracker,
                   stitching=config.stitching)


def test_the_server_survives_the_table(server: Server) -> None:
    """No row may have taken the process down or left the connection pool broken."""
    assert server.client.get("/health").status_code == 200
    assert server.client.post("/uploads", json={}).status_code == 201


# --- a person's review of a count: refused corrections change nothing ------------------------------

REVIEW_JOBS: dict[str, str] = {}  # "completed" and "queued": ids of the jobs review_jobs made


@pytest.fixture(scope="module")
def review_jobs(server: Server) -> dict[str, str]:
    """A completed video job with two cows and a sheep whose review merged #1 into #2, and a
    queued one, stored straight into the server's data folder."""
    from core.jobs import JobStatus, output_blob_path
    from core.review import REVIEW_FILE, Correction, Review

    tracks = [{"id": i, "class": cls} for i, cls in ((1, "cow"), (2, "cow"), (3, "sheep"))]
    categories = [{"id": 0, "name": "cow"}, {"id": 1, "name": "sheep"}]
    files = {"stats.json": {"video": {"width": 64, "height": 48}, "tracks": tracks},
             "coco.json": {"categories": categories, "images": [], "annotations": []}}
    for name in ("completed", "queued"):
        job = server.backends.jobs.create(Job(id=new_job_id(), input_blob="jobs/x/input", params=JobParams()))
        REVIEW_JOBS[name] = job.id
    completed = REVIEW_JOBS["completed"]
    outputs = {name: output_blob_path(completed, name) for name in files}
    for name, body in files.items():
        server.backends.blobs.upload_stream(outputs[name], [json.dumps(body).encode()])
    merged = Review(version=1, corrections=(Correction(n=1, action="merge", track=1, into=2, by="default"),))
    server.backends.blobs.write_if(output_blob_path(completed, REVIEW_FILE), merged.to_bytes(), None)

    def complete(job: Job) -> None:
        job.status, job.outputs = JobStatus.COMPLETED, outputs
    server.backends.jobs.modify(completed, complete)
    return REVIEW_JOBS


def review(method: str, path: str, body: Any = None, **headers: str) -> Callable[[Server], Answer]:
    """A request to ``/jobs/<the review job>{path}`` (``{queued}`` in ``path``: the queued job's)."""

    def send(server: Server) -> Answer:
        started = time.monotonic()
        url = "/jobs/" + path.format(completed=REVIEW_JOBS["completed"], queued=REVIEW_JOBS["queued"])
        content = body if isinstance(body, bytes) else json.dumps(body).encode() if body is not None else b""
        return _answer(server.client.request(method, url, content=content, headers={**JSON, **headers}), started)

    return send


CURRENT = {"If-Match": '"1"'}
REVIEW_ROWS = [
    Row("review: no If-Match", review("POST", "{completed}/review", {"action": "not_animal", "track": 3}),
        428, "precondition_required"),
    Row("review: a stale If-Match", review("POST", "{completed}/review", {"action": "not_animal", "track": 3},
                                           **{"If-Match": '"0"'}), 412, "review_changed"),
    Row("review: If-Match *", review("POST", "{completed}/review", {"action": "not_animal", "track": 3},
                                     **{"If-Match": "*"}), 412, "review_changed"),
    Row("review: unknown track id", review("POST", "{completed}/review", {"action": "not_animal", "track": 99},
                                           **CURRENT), 422, "invalid_input"),
    Row("review: merge into an unknown id", review("POST", "{completed}/review",
                                                   {"action": "merge", "track": 3, "into": 99}, **CURRENT),
        422, "invalid_input"),
    Row("review: merge an animal with itself", review("POST", "{completed}/review",
                                                      {"action": "merge", "track": 3, "into": 3}, **CURRENT),
        422, "invalid_input"),
    Row("review: merge cycle (#2 into #1, after #1 into #2)",
        review("POST", "{completed}/review", {"action": "merge", "track": 2, "into": 1}, **CURRENT),
        409, "review_conflict"),
    Row("review: a class the model does not know",
        review("POST", "{completed}/review", {"action": "class", "track": 3, "class": "unicorn"}, **CURRENT),
        422, "invalid_input"),
    Row("review: an empty class", review("POST", "{completed}/review", {"action": "class", "track": 3, "class": ""},
                                         **CURRENT), 422, "invalid_input"),
    Row("review: unknown action", review("POST", "{completed}/review", {"action": "delete", "track": 3}, **CURRENT),
        422, "invalid_input"),
    Row("review: an unknown field", review("POST", "{completed}/review",
                                           {"action": "not_animal", "track": 3, "why": "rock"}, **CURRENT),
        422, "invalid_input"),
    Row("review: track not a number", review("POST", "{completed}/review", {"action": "not_animal", "track": "x"},
                                             **CURRENT), 422, "invalid_input"),
    Row("review: body not JSON", review("POST", "{completed}/review", b"{not json", **CURRENT),
        422, "invalid_input"),
    Row("review: body nested 5000 deep", review("POST", "{completed}/review", b"[" * 5000 + b"]" * 5000, **CURRENT),
        422, "invalid_input"),
    Row("review: undo a correction that does not exist", review("DELETE", "{completed}/review/7", **CURRENT),
        404, "not_found"),
    Row("review: a job not completed", review("POST", "{queued}/review", {"action": "not_animal", "track": 3},
                                              **CURRENT), 409, "job_not_ready"),
    Row("review: a job that does not exist", review("GET", "job_000000000000000000000000/review"),
        404, "not_found"),
]


@pytest.mark.parametrize("row", REVIEW_ROWS, ids=[row.id for row in REVIEW_ROWS])
def test_review_boundary(server: Server, review_jobs: dict[str, str], row: Row) -> None:
    test_http_boundary(server, row)
    assert server.client.get(f"/jobs/{review_jobs['completed']}/review").headers["ETag"] == '"1"'


# --- a stream window's gallery: only streams have one, by window number ----------------------------

WINDOW_GALLERY_ROWS = [
    Row("window gallery of a video job", review("GET", "{completed}/gallery/windows/1"), 404, "not_found",
        _message_has("video job", "/gallery")),
    Row("window gallery: the window is not a number", review("GET", "{completed}/gallery/windows/last"),
        422, "invalid_input"),
    Row("window gallery of a job that does not exist",
        review("GET", "job_000000000000000000000000/gallery/windows/1"), 404, "not_found"),
]


@pytest.mark.parametrize("row", WINDOW_GALLERY_ROWS, ids=[row.id for row in WINDOW_GALLERY_ROWS])
def test_window_gallery_boundary(server: Server, review_jobs: dict[str, str], row: Row) -> None:
    test_http_boundary(server, row)


# --- the SSRF guard's address table -----------------------------------------------------------------


@pytest.mark.parametrize("address, public", [
    ("8.8.8.8", True),
    ("2606:4700:4700::1111", True),
    ("64:ff9b::808:808", True),  # NAT64 of 8.8.8.8
    ("2002:808:808::1", True),  # 6to4 of 8.8.8.8
    ("64:ff9b::7f00:1", False),
    ("64:ff9b::a00:1", False),  # NAT64 of 10.0.0.1
    ("64:ff9b:1::808:808", False),  # local-use NAT64 prefix
    ("2002:7f00:1::", False),
    ("2002:c0a8:101::1", False),  # 6to4 of 192.168.1.1
    ("::7f00:1", False),
    ("::a9fe:a9fe", False),  # IPv4-compatible 169.254.169.254
    ("::ffff:127.0.0.1", False),
    ("::ffff:10.0.0.1", False),
    ("::ffff:0:127.0.0.1", False),  # SIIT IPv4-translated
    ("::ffff:0:a9fe:a9fe", False),  # SIIT of 169.254.169.254
    ("::ffff:0:808:808", True),  # SIIT of 8.8.8.8
    ("fec0::1", False),  # site-local
    ("4000::1", False),  # outside 2000::/3: not assigned, so nowhere public
    ("2001:db8::1", False),  # documentation
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", False),  # Teredo
    ("224.0.0.1", False),
    ("239.255.255.250", False),
    ("ff02::1", False),
    ("ff0e::1", False),
    ("127.0.0.1", False),
    ("::1", False),
    ("::", False),
    ("0.0.0.0", False),
    ("100.64.0.1", False),  # carrier-grade NAT
    ("fd00::1", False),
    ("fe80::1", False),
])
def test_which_addresses_a_webhook_may_reach(address: str, public: bool) -> None:
    assert is_public_address(ip_address(address)) is public


# --- what the API accepts, the worker accepts ----------------------------------------------------


def _square(size: float) -> list[list[float]]:
    return [[0, 0], [size, 0], [size, size], [0, size]]


@pytest.mark.parametrize("raw", [
    {"threshold": 0.0}, {"threshold": 1.0}, {"frame_stride": 1000}, {"frame_interval_seconds": 3600},
    {"frame_interval_seconds": 1e-6},
    {"lines": [LINE] * MAX_LINES}, {"zones": [ZONE] * MAX_ZONES},
    {"lines": [{"start": [-1e6, -1e6], "end": [1e6, 1e6]}]},
    {"zones": [{"polygon": [[i, i * i % 7] for i in range(MAX_POLYGON_POINTS)]}]},
    {"lines": [{"name": "line-2", **LINE}, {"name": "gate", **LINE}, LINE]},  # line-3: no clash
    {"zones": [{"name": "pen", "polygon": _square(5)}, {"polygon": _square(9)}]},
    {"classes": ["Cow", " sheep ", ""]},
    {"tracker": "bytetrack", "stitching": "off"}, {"tracker": "botsort", "stitching": True},
], ids=lambda raw: json.dumps(raw)[:60])
def test_parameters_the_api_accepts_the_worker_accepts(raw: dict[str, Any]) -> None:
    params = check_params(raw, Settings(_env_file=None))  # type: ignore[call-arg]
    _assert_the_worker_accepts(params.model_dump(mode="json"))


def test_a_job_stored_before_the_unique_name_rule_still_reads_and_deletes(server: Server) -> None:
    """Records keep what they were written with: a job whose lines share a name (accepted by an
    older version, then failed by the worker) must not make GET /jobs fail for everyone."""
    old_params = JobParams.model_validate({"lines": [named("line", LINE)] * 2}, context={"stored": True})
    job = server.backends.jobs.create(Job(id=new_job_id(), input_blob="jobs/old/input", params=old_params))
    listed = server.client.get("/jobs", params={"limit": 200})
    assert listed.status_code == 200, listed.text
    assert job.id in {item["job_id"] for item in listed.json()["jobs"]}
    assert [line["name"] for line in server.client.get(f"/jobs/{job.id}").json()["params"]["lines"]] == ["line"] * 2
    assert server.client.delete(f"/jobs/{job.id}").status_code == 202  # queued: cancelled
