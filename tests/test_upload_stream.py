"""Receiving uploads (api/upload_stream.py) through Starlette's real Request, fed by an ASGI
receive channel that delivers the body in chunks the way uvicorn does: the file part goes
to a scratch file, reading stops at the size limit, a silent client is cut off, and nothing
is left behind when anything fails."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest
from starlette.requests import ClientDisconnect, Request

from api.upload_stream import (
    MAX_FIELD_BYTES,
    MAX_FIELDS,
    ReceivedForm,
    receive_multipart,
    receive_raw_body,
    receive_small_body,
    safe_filename,
)
from core.errors import InvalidInput, StorageError, StorageUnavailable, UploadStalled, UploadTooLarge
from tests.faults import full_disk

BOUNDARY = "cattlecounter-test-boundary"
CHUNK = 64 * 1024  # what uvicorn hands an app at a time
STALL_S = 0.3


class BodyChannel:
    """An ASGI receive channel: the body in ``CHUNK``-sized messages, optionally with a pause
    before each, and silence (as from a client that stopped sending) after ``stall_after``."""

    def __init__(self, body: bytes, gap_s: float = 0.0, stall_after: int | None = None,
                 disconnect_after: int | None = None) -> None:
        self.chunks = [body[i:i + CHUNK] for i in range(0, len(body), CHUNK)] or [b""]
        self.gap_s = gap_s
        self.stall_after = stall_after
        self.disconnect_after = disconnect_after
        self.delivered = 0  # body messages handed to the app

    async def __call__(self) -> dict:
        if self.delivered == self.stall_after:
            await anyio.sleep_forever()
        if self.delivered == self.disconnect_after:
            return {"type": "http.disconnect"}
        if self.gap_s:
            await anyio.sleep(self.gap_s)
        chunk = self.chunks[self.delivered]
        self.delivered += 1
        return {"type": "http.request", "body": chunk, "more_body": self.delivered < len(self.chunks)}


def make_request(channel: BodyChannel, content_type: str | None, content_length: int | None = None) -> Request:
    headers = []
    if content_type is not None:
        headers.append((b"content-type", content_type.encode()))
    if content_length is not None:
        headers.append((b"content-length", str(content_length).encode()))
    scope = {"type": "http", "method": "POST", "path": "/jobs", "headers": headers, "query_string": b""}
    return Request(scope, channel)


def multipart(fields: dict[str, str], files: list[tuple[str, str, bytes]]) -> bytes:
    """A multipart/form-data body: text ``fields``, then (field, filename, content) ``files``."""
    parts = []
    for name, value in fields.items():
        parts.append(f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, filename, content in files:
        head = (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                "Content-Type: video/mp4\r\n\r\n")
        parts.append(head.encode() + content + b"\r\n")
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


FORM = f"multipart/form-data; boundary={BOUNDARY}"


def receive_form(channel: BodyChannel, scratch: Path, max_bytes: int = 10**8, content_length: int | None = None,
                 content_type: str | None = FORM) -> ReceivedForm:
    request = make_request(channel, content_type, content_length)
    return anyio.run(receive_multipart, request, scratch, max_bytes, STALL_S)


def video_bytes(size: int) -> bytes:
    return os.urandom(size)  # random, so a misplaced or repeated chunk cannot go unnoticed


# --- multipart ---------------------------------------------------------------------------------


def test_the_file_is_streamed_to_scratch_byte_for_byte_and_fields_are_kept(tmp_path: Path) -> None:
    content = video_bytes(3 * 1024 * 1024 + 17)  # several write batches and a ragged end
    body = multipart({"classes": "cow,sheep", "threshold": "0.4"}, [("file", "../../herd.mp4", content)])
    form = receive_form(BodyChannel(body), tmp_path)
    assert form.fields == {"classes": "cow,sheep", "threshold": "0.4"}
    assert form.file is not None and form.file.filename == "herd.mp4" and form.file.size == len(content)
    assert form.file.path.parent.parent == tmp_path and form.file.path.name == "herd.mp4"
    assert form.file.path.read_bytes() == content
    form.discard()
    assert list(tmp_path.iterdir()) == []


def test_a_file_past_the_limit_stops_the_reading_and_leaves_nothing(tmp_path: Path) -> None:
    limit = 1024 * 1024
    channel = BodyChannel(multipart({}, [("file", "big.mp4", video_bytes(8 * limit))]))
    with pytest.raises(UploadTooLarge, match=f"limit of {limit} bytes"):
        receive_form(channel, tmp_path, max_bytes=limit)  # no Content-Length: found while reading
    assert channel.delivered < len(channel.chunks) // 2  # the rest of the body was never read
    assert list(tmp_path.iterdir()) == []


def test_a_declared_oversize_is_refused_before_any_of_the_body_is_read(tmp_path: Path) -> None:
    channel = BodyChannel(multipart({}, [("file", "big.mp4", b"x" * 1000)]))
    with pytest.raises(UploadTooLarge, match="larger than the limit of 1000 bytes"):
        receive_form(channel, tmp_path, max_bytes=1000, content_length=10**9)
    assert channel.delivered == 0
    assert list(tmp_path.iterdir()) == []


def test_a_client_that_goes_silent_is_cut_off_and_its_partial_file_removed(tmp_path: Path) -> None:
    channel = BodyChannel(multipart({}, [("file", "a.mp4", video_bytes(4 * CHUNK))]), stall_after=2)
    with pytest.raises(UploadStalled, match="nothing arrived for 0.3 s") as caught:
        receive_form(channel, tmp_path)  # without the stall timeout this would wait for ever
    assert caught.value.code == "upload_stalled"
    assert list(tmp_path.iterdir()) == []


def test_a_slow_client_that_keeps_sending_is_never_cut_off(tmp_path: Path) -> None:
    # each pause is shorter than the stall timeout, all of them together much longer
    content = video_bytes(8 * CHUNK)
    channel = BodyChannel(multipart({}, [("file", "slow.mp4", content)]), gap_s=STALL_S / 3)
    form = receive_form(channel, tmp_path)
    assert form.file is not None and form.file.path.read_bytes() == content


def test_the_telemetry_part_is_a_file_of_its_own_with_its_own_limit(tmp_path: Path) -> None:
    video, srt = video_bytes(2000), b"1\n00:00:00,000 --> 00:00:00,033\n[latitude: 52.1] [longitude: 5.6]\n" * 40
    body = multipart({"classes": "cow"}, [("file", "herd.mp4", video), ("telemetry", "../DJI_0001.SRT", srt)])
    request = make_request(BodyChannel(body), FORM, None)
    form = anyio.run(receive_multipart, request, tmp_path, len(video), STALL_S, 1, len(srt))
    assert [received.filename for received in form.files] == ["herd.mp4"] and form.size == len(video)
    assert form.telemetry is not None and form.telemetry.filename == "DJI_0001.SRT"
    assert form.telemetry.path.read_bytes() == srt and "telemetry" not in form.fields
    form.discard()
    assert list(tmp_path.iterdir()) == []

    too_big = make_request(BodyChannel(body), FORM, None)
    with pytest.raises(UploadTooLarge, match="telemetry: .* limit of 100 bytes .MAX_TELEMETRY_BYTES"):
        anyio.run(receive_multipart, too_big, tmp_path, len(video), STALL_S, 1, 100)
    assert list(tmp_path.iterdir()) == []


def test_telemetry_sent_as_a_plain_field_is_still_a_file(tmp_path: Path) -> None:
    text = "1\n00:00:00,000 --> 00:00:00,033\n[latitude: 52.1] [longitude: 5.6]\n"
    request = make_request(BodyChannel(multipart({"telemetry": text}, [])), FORM, None)
    form = anyio.run(receive_multipart, request, tmp_path, 10, STALL_S, 1, 1000)
    assert form.telemetry is not None and form.telemetry.filename == "telemetry.srt"
    assert form.telemetry.path.read_text() == text and form.fields == {}
    form.discard()


def test_a_client_that_disconnects_leaves_nothing(tmp_path: Path) -> None:
    channel = BodyChannel(multipart({}, [("file", "a.mp4", video_bytes(4 * CHUNK))]), disconnect_after=2)
    with pytest.raises(InvalidInput, match="malformed multipart body"):
        receive_form(channel, tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "fields, files, words",
    [
        ({}, [("video", "a.mp4", b"data")], "send the video or images in the form field 'file', not 'video'"),
        ({}, [("file", "a.mp4", b"one"), ("file", "b.mp4", b"two")], "one video per job"),
        ({"note": "x" * (MAX_FIELD_BYTES + 1)}, [], f"longer than {MAX_FIELD_BYTES} bytes"),
        ({f"f{i}": "v" for i in range(MAX_FIELDS + 1)}, [], f"too many form fields (at most {MAX_FIELDS})"),
    ],
    ids=["wrong-field", "two-files", "long-field", "many-fields"],
)
def test_a_form_we_cannot_take_is_refused_with_what_to_change(tmp_path: Path, fields, files, words) -> None:
    with pytest.raises(InvalidInput) as caught:
        receive_form(BodyChannel(multipart(fields, files)), tmp_path)
    assert words in str(caught.value) and caught.value.http_status == 422
    assert list(tmp_path.iterdir()) == []  # a file part received before the refusal is gone too


@pytest.mark.parametrize("content_type", [None, "application/json", "multipart/form-data"])
def test_a_body_that_is_not_multipart_with_a_boundary_is_refused(tmp_path: Path, content_type) -> None:
    channel = BodyChannel(b"{}")
    with pytest.raises(InvalidInput, match="send the video as multipart/form-data"):
        receive_form(channel, tmp_path, content_type=content_type)
    assert channel.delivered == 0


def test_a_malformed_body_is_a_422_not_a_500(tmp_path: Path) -> None:
    body = f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.mp4\"\r\n".encode()
    body += b"no blank line ends these headers " * 10 + b"\x00\x01garbage"
    with pytest.raises(InvalidInput, match="malformed multipart body"):
        receive_form(BodyChannel(body), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_scratch_directory_that_cannot_be_written_is_a_storage_error(tmp_path: Path) -> None:
    missing = tmp_path / "gone"  # as when the scratch volume is unmounted
    with pytest.raises(StorageError, match="could not store the upload") as caught:
        receive_form(BodyChannel(multipart({}, [("file", "a.mp4", b"data")])), missing)
    assert caught.value.code == "storage_error" and str(missing) not in str(caught.value)  # no server paths


# --- raw and small bodies ------------------------------------------------------------------


def test_a_raw_body_is_streamed_to_its_destination(tmp_path: Path) -> None:
    content = video_bytes(2 * 1024 * 1024 + 5)
    destination = tmp_path / "data"
    request = make_request(BodyChannel(content), "application/octet-stream")
    assert anyio.run(receive_raw_body, request, destination, len(content), STALL_S) == len(content)
    assert destination.read_bytes() == content


@pytest.mark.parametrize(
    "channel, error",
    [
        (lambda: BodyChannel(video_bytes(3 * 1024 * 1024)), UploadTooLarge),
        (lambda: BodyChannel(video_bytes(4 * CHUNK), stall_after=2), UploadStalled),
        (lambda: BodyChannel(video_bytes(4 * CHUNK), disconnect_after=2), ClientDisconnect),
    ],
    ids=["too-large", "stalled", "disconnected"],
)
def test_a_raw_body_that_fails_leaves_nothing_at_its_destination(
    tmp_path: Path, channel: Callable[[], BodyChannel], error: type[Exception]
) -> None:
    destination = tmp_path / "data"
    request = make_request(channel(), "application/octet-stream")
    with pytest.raises(error):
        anyio.run(receive_raw_body, request, destination, 1024 * 1024, STALL_S)
    assert not destination.exists()


def test_a_small_body_is_read_whole_up_to_its_limit() -> None:
    request = make_request(BodyChannel(b'{"upload_id": "u1"}'), "application/json")
    assert anyio.run(receive_small_body, request, 100, STALL_S, "too big") == b'{"upload_id": "u1"}'

    channel = BodyChannel(b"x" * (3 * CHUNK))
    with pytest.raises(UploadTooLarge, match="^the JSON body is too large$"):
        anyio.run(receive_small_body, make_request(channel, "application/json"), CHUNK, STALL_S,
                  "the JSON body is too large")
    assert channel.delivered == 2  # stopped at the first chunk past the limit

    declared = BodyChannel(b"x" * 200)
    with pytest.raises(UploadTooLarge):
        anyio.run(receive_small_body, make_request(declared, "application/json", 200), 100, STALL_S, "too big")
    assert declared.delivered == 0


# --- file names --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("herd.mp4", "herd.mp4"),
        ("../../etc/herd.mp4", "herd.mp4"),
        ("C:\\Users\\me\\herd.mp4", "herd.mp4"),
        ("dir/..", "video"),
        ("", "video"),
        (".", "video"),
        ("  ", "video"),
        ("he\x00rd.mp4", "herd.mp4"),
    ],
)
def test_a_client_file_name_is_reduced_to_its_last_component(raw: str, expected: str) -> None:
    assert safe_filename(raw) == expected


def test_a_long_name_is_cut_to_255_bytes_of_whole_characters() -> None:
    name = safe_filename("牛" * 100 + ".mp4")  # 3 bytes per character in UTF-8
    assert len(name.encode("utf-8")) <= 255 and name == "牛" * 85


def test_a_full_scratch_disk_is_a_503_to_retry_not_a_500(tmp_path: Path) -> None:
    with full_disk(tmp_path / "scratch") as scratch:
        with pytest.raises(StorageUnavailable, match="scratch disk is full") as caught:
            receive_form(BodyChannel(multipart({}, [("file", "a.mp4", b"data" * 4096)])), scratch)
        assert caught.value.http_status == 503 and caught.value.transient
        assert [p.name for p in scratch.iterdir()] == ["filler"]  # the partial part was removed
