"""``POST /streams/snapshot``: one picture of a live camera, to draw lines on before the stream
starts. The API in-process (TestClient) over the real local backend, against real sources: the
GStreamer RTSP server and ffmpeg's live HLS playlist (tests/fixtures_rtsp.py), and a TCP server
that accepts and never answers. The egress policy is POST /streams's: checked before any
connection is made."""

from __future__ import annotations

import io
import threading
from concurrent.futures import ThreadPoolExecutor

import av
import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from api.snapshot import MAX_SNAPSHOTS_AT_ONCE, OPEN_TIMEOUT_S
from core.backends import build_backends
from tests.waiting import wait_until

PASSWORD = "pa55-Secret"


@pytest.fixture
def api(make_settings):
    settings = make_settings("local", stream_allowed_networks=["127.0.0.0/8"])
    backends = build_backends(settings)
    with TestClient(create_app(settings, backends)) as client:
        yield client
    backends.close()


def picture_size(jpeg: bytes) -> tuple[int, int]:
    """The JPEG's width and height, as a real decoder reads them."""
    with av.open(io.BytesIO(jpeg)) as container:
        frame = next(container.decode(video=0))
        return frame.width, frame.height


def snapshot(client: TestClient, url: str):
    return client.post("/streams/snapshot", json={"source_url": url})


@pytest.mark.heavy
def test_an_rtsp_camera_gives_a_jpeg_at_its_own_size(api, rtsp_server_factory) -> None:
    camera = rtsp_server_factory(width=320, height=240)
    answer = snapshot(api, camera.url.replace("rtsp://", f"rtsp://viewer:{PASSWORD}@"))
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "image/jpeg"
    assert answer.headers["cache-control"] == "no-store"
    assert picture_size(answer.content) == (320, 240)


@pytest.mark.heavy
def test_an_hls_playlist_gives_a_jpeg_through_the_checking_proxy(api, hls_stream) -> None:
    answer = snapshot(api, hls_stream.url)
    assert answer.status_code == 200, answer.text
    assert picture_size(answer.content) == (160, 120)


def test_a_private_camera_outside_the_allowlist_is_refused_before_any_connection(make_settings, silent_server):
    settings = make_settings("local")  # STREAM_ALLOWED_NETWORKS empty: no private address
    backends = build_backends(settings)
    with TestClient(create_app(settings, backends)) as client:
        answer = snapshot(client, silent_server.url("rtsp"))
    backends.close()
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "stream_source_not_allowed"
    assert silent_server.accepted == 0, "the policy answers before anything is connected"


def test_a_camera_that_never_answers_is_a_502_after_the_open_timeout_without_the_password(api, silent_server):
    answer = snapshot(api, silent_server.url("rtsp").replace("rtsp://", f"rtsp://admin:{PASSWORD}@"))
    assert answer.status_code == 502
    error = answer.json()["error"]
    assert error["code"] == "stream_unavailable"
    assert f"timed out: no video within {OPEN_TIMEOUT_S:g} s" in error["message"]
    assert PASSWORD not in answer.text and "admin" not in answer.text
    assert silent_server.accepted >= 1


@pytest.mark.parametrize(("body", "expected"), [
    ({}, "source_url: required"),
    ({"source_url": "file:///etc/passwd"}, "source_url: expected an rtsp://"),
    ({"source_url": "rtsp://127.0.0.1:8554/cam", "lines": []}, "lines: a snapshot takes only source_url"),
])
def test_a_bad_snapshot_request_is_a_422_naming_the_field(api, body, expected) -> None:
    answer = api.post("/streams/snapshot", json=body)
    assert answer.status_code == 422
    assert expected in answer.json()["error"]["message"]


@pytest.mark.heavy
def test_snapshots_past_the_limit_at_once_are_refused_with_429(api, silent_server) -> None:
    started = threading.Barrier(MAX_SNAPSHOTS_AT_ONCE + 1)

    def held() -> int:
        started.wait()
        return snapshot(api, silent_server.url("rtsp")).status_code

    with ThreadPoolExecutor(MAX_SNAPSHOTS_AT_ONCE) as pool:
        waiting = [pool.submit(held) for _ in range(MAX_SNAPSHOTS_AT_ONCE)]
        started.wait()
        wait_until(lambda: silent_server.accepted >= MAX_SNAPSHOTS_AT_ONCE, OPEN_TIMEOUT_S,
                   "every held snapshot connected")
        refused = snapshot(api, silent_server.url("rtsp"))
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "too_many_snapshots"
        assert [future.result() for future in waiting] == [502] * MAX_SNAPSHOTS_AT_ONCE
    assert snapshot(api, "rtsp://127.0.0.1:1/none").status_code == 502, "the slots are given back"
