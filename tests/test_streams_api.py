"""Stream jobs through the API in-process (TestClient) over the real local backend: POST
/streams validation, the SSRF allowlist, the secret source URL (never in an answer, the
record, the queue message or a log line), DELETE semantics and the live-file route.
tests/test_streams_e2e.py runs a real RTSP camera through API and worker processes."""

from __future__ import annotations

import csv
import io
import json
import logging
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from core.backends import build_backends
from core.errors import InvalidInput, SourceHostUnresolved, StreamSourceNotAllowed
from core.jobs import JobMessage, JobStatus, output_blob_path, source_secret_path
from core.netpolicy import check_stream_url, redact_url
from core.outputs import GAPS, LIVE_PLAYLIST, WINDOWS
from ml_engine.counting import TrackEvent
from ml_engine.live.counts import Window

PASSWORD = "pa55-Secret"
SOURCE = f"rtsp://admin:{PASSWORD}@127.0.0.1:8554/cam?token=tok-{PASSWORD}"
LEASE = timedelta(seconds=30)
API_KEY = "key-0123456789"
GAP_LINE = b'{"from": "2026-12-01T10:00:00Z", "to": "2026-12-01T10:00:05Z", "reason": "stall"}\n'


def client_for(make_settings, **overrides):
    settings = make_settings("local", **overrides)
    backends = build_backends(settings)
    client = TestClient(create_app(settings, backends))
    client.backends = backends
    return client


@pytest.fixture
def api(make_settings):
    with client_for(make_settings, stream_allowed_networks=["127.0.0.0/8"], max_stream_seconds=7200) as client:
        yield client
    client.backends.close()


def start(client, **body):
    return client.post("/streams", json={"source_url": SOURCE, **body})


def test_a_stream_is_queued_on_the_stream_queue_and_its_url_is_never_shown(api, caplog):
    caplog.set_level(logging.DEBUG)
    response = start(api, classes=["cow"], window_s=30, lines=[{"start": [0, 5], "end": [100, 5]}])
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["kind"] == "stream" and job["status"] == "queued"
    assert job["source"] == "rtsp://127.0.0.1:8554/cam"
    assert job["stream"]["window_s"] == 30 and job["params"]["lines"][0]["name"] == "line-1"

    message = api.backends.stream_queue.receive(LEASE)
    assert api.backends.queue.receive(LEASE) is None  # file workers never see it
    decoded = JobMessage.decode(message.body)
    assert decoded.job_id == job["job_id"] and decoded.input_blob == source_secret_path(job["job_id"])
    secret = b"".join(api.backends.blobs.open_range(source_secret_path(job["job_id"]))).decode()
    assert secret == SOURCE

    shown = [response.text, api.get(f"/jobs/{job['job_id']}").text, api.get("/jobs").text, message.body,
             api.backends.jobs.get(job["job_id"]).to_record(), api.post(f"/jobs/{job['job_id']}/links").text,
             caplog.text]
    for text in shown:
        assert PASSWORD not in text and "admin" not in text


def test_a_private_source_without_an_allowlist_is_refused_and_nothing_is_stored(make_settings):
    with client_for(make_settings) as client:
        response = start(client)
        assert response.status_code == 422
        error = response.json()["error"]
        assert error["code"] == "stream_source_not_allowed" and "STREAM_ALLOWED_NETWORKS" in error["message"]
        assert PASSWORD not in response.text
        assert list(client.backends.blobs.list("")) == [] and client.backends.jobs.list().jobs == []
        assert client.backends.stream_queue.approximate_length() == 0
    client.backends.close()


@pytest.mark.parametrize(("body", "expected"), [
    ({"source_url": None}, "source_url: required"),
    ({"source_url": "ftp://127.0.0.1/cam"}, "source_url: expected an rtsp://"),
    ({"source_url": "rtsp:///no-host"}, "source_url: expected an rtsp://"),
    ({"frame_stride": 2}, "frame_stride: not for streams"),
    ({"stitching": True}, "stitching: not for streams"),
    ({"window_s": 1}, "window_s"),
    ({"duration_s": 7201}, "MAX_STREAM_SECONDS"),
    ({"end_at": "2020-01-01T00:00:00Z"}, "end_at: already past"),
    ({"end_at": "2099-01-01T00:00:00"}, "end_at: give a time zone"),
    ({"events": True}, "events: needs a callback_url"),
    ({"threshold": 2}, "threshold"),
    ({"colour": "red"}, "colour"),
])
def test_bad_stream_requests_are_refused_with_the_field_named(api, body, expected):
    response = api.post("/streams", json={"source_url": SOURCE, **body})
    assert response.status_code == 422, response.text
    assert expected in response.json()["error"]["message"]
    assert PASSWORD not in response.text
    assert api.backends.stream_queue.approximate_length() == 0


def test_the_same_idempotency_key_returns_the_same_stream(api):
    first = api.post("/streams", json={"source_url": SOURCE}, headers={"Idempotency-Key": "cam-1"})
    again = api.post("/streams", json={"source_url": SOURCE}, headers={"Idempotency-Key": "cam-1"})
    assert (first.status_code, again.status_code) == (202, 200)
    assert first.json()["job_id"] == again.json()["job_id"]
    assert api.backends.stream_queue.approximate_length() == 1
    assert [b.path for b in api.backends.blobs.list("")] == [source_secret_path(first.json()["job_id"])]
    other = api.post("/streams", json={"source_url": SOURCE, "duration_s": 60}, headers={"Idempotency-Key": "cam-1"})
    assert other.status_code == 422 and other.json()["error"]["code"] == "idempotency_key_reused"
    assert [b.path for b in api.backends.blobs.list("")] == [source_secret_path(first.json()["job_id"])]


def test_delete_of_a_queued_stream_cancels_it_and_drops_its_secret_then_removes_it(api):
    job_id = start(api).json()["job_id"]
    cancelled = api.delete(f"/jobs/{job_id}")
    assert cancelled.status_code == 202 and cancelled.json()["status"] == "cancelled"
    assert not api.backends.blobs.exists(source_secret_path(job_id))
    assert api.delete(f"/jobs/{job_id}").status_code == 204
    assert api.get(f"/jobs/{job_id}").status_code == 404


def running_stream(api) -> str:
    """A stream as a worker leaves it mid-run: processing, with a playlist, a segment and windows."""
    job_id = start(api).json()["job_id"]
    blobs = api.backends.blobs
    playlist = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\nseg-000001.ts\n#EXTINF:2.0,\nseg-000002.ts\n"
    blobs.upload_stream(output_blob_path(job_id, LIVE_PLAYLIST), [playlist.encode()])
    blobs.upload_stream(output_blob_path(job_id, "live/seg-000001.ts"), [b"\x47" * 188])
    blobs.upload_stream(output_blob_path(job_id, WINDOWS), [b'{"window": 1, "unique": 3}\n'])
    blobs.upload_stream(output_blob_path(job_id, GAPS), [GAP_LINE])

    def run(job):
        job.status = JobStatus.PROCESSING
        job.outputs = {name: output_blob_path(job_id, name) for name in (LIVE_PLAYLIST, WINDOWS, GAPS)}

    api.backends.jobs.modify(job_id, run)
    return job_id


def test_a_running_stream_serves_its_playlist_uncached_its_segments_and_its_windows(api):
    job_id = running_stream(api)
    job = api.get(f"/jobs/{job_id}").json()
    assert job["links"]["live"] == f"/jobs/{job_id}/live/index.m3u8"
    playlist = api.get(job["links"]["live"])
    assert playlist.status_code == 200 and playlist.headers["content-type"] == "application/vnd.apple.mpegurl"
    assert "no-cache" in playlist.headers["cache-control"] and "seg-000001.ts" in playlist.text
    segment = api.get(f"/jobs/{job_id}/live/seg-000001.ts")
    assert segment.status_code == 200 and segment.content == b"\x47" * 188
    assert segment.headers["content-type"] == "video/mp2t"
    assert api.get(f"/jobs/{job_id}/live/seg-000009.ts").status_code == 404  # not written
    assert api.get(f"/jobs/{job_id}/live/..%2Fsource.secret").status_code == 404
    assert api.get(f"/jobs/{job_id}/live/source.secret").status_code == 404
    assert api.get(job["links"]["windows"]).text == '{"window": 1, "unique": 3}\n'
    gaps = api.get(job["links"]["gaps"])
    assert gaps.status_code == 200 and gaps.content == GAP_LINE
    assert gaps.headers["content-type"] == "application/x-ndjson"
    assert "result" not in job["links"]  # stats.json comes when it ends


def ended_stream(api, status: JobStatus) -> str:
    """A stream as the worker leaves one that never delivered a frame: final, no outputs."""
    job_id = start(api).json()["job_id"]

    def end(job):
        job.status = status
        job.finished_at = datetime.now(UTC)

    api.backends.jobs.modify(job_id, end)
    return job_id


@pytest.mark.parametrize("status", [JobStatus.FAILED, JobStatus.COMPLETED, JobStatus.CANCELLED])
def test_every_ended_stream_has_a_gaps_file_even_without_a_gap(api, status):
    """Fails without the fix: 409 "has no gaps.jsonl" for a stream that ended without a gap
    (or without ever connecting), and no gaps link."""
    job_id = ended_stream(api, status)
    job = api.get(f"/jobs/{job_id}").json()
    assert job["links"]["gaps"] == f"/jobs/{job_id}/gaps"
    gaps = api.get(job["links"]["gaps"])
    assert gaps.status_code == 200 and gaps.content == b"", gaps.text
    assert gaps.headers["content-type"] == "application/x-ndjson" and gaps.headers["content-length"] == "0"
    download = api.get(job["links"]["gaps"], params={"download": "true"})
    assert download.headers["content-disposition"] == f'attachment; filename="{job_id}-gaps.jsonl"'
    assert "gaps" in api.post(f"/jobs/{job_id}/links").json()["links"]


def test_delete_of_a_running_stream_asks_it_to_stop_and_keeps_it(api):
    job_id = running_stream(api)
    stopping = api.delete(f"/jobs/{job_id}")
    assert stopping.status_code == 202
    assert stopping.json()["status"] == "processing" and stopping.json()["cancel_requested"] is True
    assert api.backends.blobs.exists(source_secret_path(job_id))  # the worker still needs it until it stops


def test_a_signed_live_link_opens_the_playlist_and_every_segment_it_names(make_settings):
    with client_for(make_settings, stream_allowed_networks=["127.0.0.1/32"], api_keys=[API_KEY]) as client:
        client.headers["X-API-Key"] = API_KEY
        job_id = running_stream(client)
        link = client.post(f"/jobs/{job_id}/links").json()["links"]["live"]
        assert link.startswith(f"/jobs/{job_id}/live/index.m3u8?exp=")
        del client.headers["X-API-Key"]
        assert client.get(f"/jobs/{job_id}/live/index.m3u8").status_code == 401
        playlist = client.get(link)
        assert playlist.status_code == 200
        signed_segments = [line for line in playlist.text.splitlines() if line.startswith("seg-")]
        assert len(signed_segments) == 2 and all("&sig=" in line for line in signed_segments)
        segment = client.get(f"/jobs/{job_id}/live/{signed_segments[0]}")
        assert segment.status_code == 200 and segment.content == b"\x47" * 188
        forged = client.get(f"/jobs/{job_id}/live/{signed_segments[0][:-3]}xyz")
        assert forged.status_code == 401
    client.backends.close()


def test_check_stream_url_allows_public_and_allowlisted_addresses_only():
    assert check_stream_url("rtsp://8.8.8.8/cam", []) == ["8.8.8.8"]
    assert check_stream_url("rtsp://10.20.0.31:554/cam", ["10.20.0.0/16"]) == ["10.20.0.31"]
    for url in ("rtsp://10.21.0.31/cam", "http://169.254.169.254/latest", "rtsp://[::1]/cam",
                "rtsp://[::ffff:10.20.0.31]/cam", "rtsps://127.0.0.1/cam"):
        with pytest.raises(StreamSourceNotAllowed):
            check_stream_url(url, ["10.20.0.0/16"])
    with pytest.raises(InvalidInput, match="source_url: expected"):
        check_stream_url("file:///etc/passwd", ["0.0.0.0/0"])


def test_redacted_source_urls_keep_no_credentials_query_or_fragment():
    assert redact_url(SOURCE) == "rtsp://127.0.0.1:8554/cam"
    assert redact_url("https://u:p@[fe80::1]:8443/live/index.m3u8?key=k#f") == \
        "https://[fe80::1]:8443/live/index.m3u8"


@pytest.mark.parametrize(("url", "shown"), [
    # credentials in the path, as Dahua-style and ;param cameras take them
    ("rtsp://10.0.0.9/user=admin_password=SECRET_channel=1_stream=0.sdp", "rtsp://10.0.0.9/user=***"),
    ("rtsp://10.0.0.9/cam/realmonitor;password=SECRET;channel=1", "rtsp://10.0.0.9/cam/realmonitor;***"),
    ("rtsp://10.0.0.9/live/ch0/pwd=SECRET/x", "rtsp://10.0.0.9/live/ch0/pwd=***/x"),
    ("https://cdn.example/hls/token=SECRET/auth_key=SECRET2/index.m3u8",
     "https://cdn.example/hls/token=***/auth_key=***/index.m3u8"),
    # malformed: never raises, never echoes
    ("rtsp://admin:SECRET@[::1/x", "rtsp://<unparseable>"),
    ("rtsp://admin:SECRET@host:notaport/x", "rtsp://<unparseable>"),
    ("rtsp://admin:SECRET@host:99999/x", "rtsp://<unparseable>"),
    ("not a url SECRET", "<unparseable>"),
])
def test_redact_url_masks_credentials_in_the_path_and_never_raises(url, shown):
    assert redact_url(url) == shown
    assert "SECRET" not in redact_url(url)


def test_redact_url_caps_what_it_shows():
    assert len(redact_url("rtsp://cam.example/" + "a" * 3000)) == 500


@pytest.mark.parametrize("url", ["rtsp://admin:SECRET@[::1/x", "rtsp://admin:SECRET@127.0.0.1:99999/cam",
                                 "rtsp://admin:SECRET@127.0.0.1:port/cam"])
def test_a_malformed_source_url_is_a_422_that_says_what_is_wrong(api, url):
    response = start(api, source_url=url)
    assert response.status_code == 422, response.text
    assert "not a valid URL" in response.json()["error"]["message"]
    assert "SECRET" not in response.text


def test_an_unresolvable_host_is_a_422_at_submit_but_transient_for_a_worker():
    with pytest.raises(SourceHostUnresolved, match="cannot resolve") as refused:
        check_stream_url("rtsp://no-such-camera.invalid/cam", [])
    assert isinstance(refused.value, InvalidInput) and refused.value.http_status == 422  # at submit
    assert refused.value.transient  # the worker's runner retries it (a DNS outage), not fails it


def test_end_at_in_the_future_is_accepted(api):
    end_at = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    response = start(api, end_at=end_at)
    assert response.status_code == 202, response.text
    assert response.json()["stream"]["end_at"] is not None


def test_swagger_documents_the_stream_body_and_its_models(api):
    schema = api.get("/openapi.json").json()
    body = schema["paths"]["/streams"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    # one object of the stream's own fields and the counting ones (tests/test_openapi_contract.py)
    assert {"source_url", "duration_s", "window_s", "lines", "tracker"} <= set(body["properties"])
    assert {"StreamOptions", "JobParams", "LiveInfo"} <= set(schema["components"]["schemas"])
    assert "/jobs/{job_id}/live/{name}" in schema["paths"]


def test_delete_of_a_stream_waiting_for_its_next_run_leaves_it_to_a_worker_to_finalise(make_settings):
    """Handed back by a worker shutting down (or retried, or after a SIGKILL), a stream that has
    counted for hours has no final outputs yet (no stats.json, a playlist that does not end): it
    stays queued, flagged, and the next worker finalises it (tests/test_streams_e2e.py)."""
    with client_for(make_settings, stream_allowed_networks=["127.0.0.0/8"], webhook_allow_private=True) as api:
        job_id = start(api, callback_url="http://127.0.0.1:9/hook").json()["job_id"]

        def handed_back(job):
            job.started_at = job.created_at
            job.outputs = {WINDOWS: output_blob_path(job_id, WINDOWS)}

        api.backends.jobs.modify(job_id, handed_back)
        stopping = api.delete(f"/jobs/{job_id}")
        assert stopping.status_code == 202
        assert (stopping.json()["status"], stopping.json()["cancel_requested"]) == ("queued", True)
        assert api.backends.blobs.exists(source_secret_path(job_id))  # the worker reads it to finalise
        assert api.backends.outbox.events(job_id) == []  # the worker writes job.completed with its outputs
        again = api.delete(f"/jobs/{job_id}")  # a second DELETE while it is stopping changes nothing
        assert again.status_code == 202 and again.json()["status"] == "queued"
        assert api.backends.stream_queue.approximate_length() == 1  # its message is still there for a worker
    api.backends.close()


def test_windows_csv_is_windows_jsonl_as_a_spreadsheet_while_the_stream_runs(api):
    job_id = start(api).json()["job_id"]
    first = Window(1, 1_800_000_000.0, 60.0, ["gate"], ["pen, north"], frames_dropped_before=0)
    first.add_track("cow")
    first.add_event(TrackEvent("line_crossing", "gate", "in", 1, "cow"))
    first.add_frame(0.2, {"pen, north": 1})
    second = Window(2, 1_800_000_060.0, 60.0, ["gate"], ["pen, north"], frames_dropped_before=3)
    second.add_track("bœuf")  # a class name beyond ASCII
    second.add_frame(0.3, {"pen, north": 0})
    lines = [json.dumps(w.record(w.ends_at, 5)).encode() + b"\n" for w in (first, second)]
    api.backends.blobs.upload_stream(output_blob_path(job_id, WINDOWS), lines)
    api.backends.jobs.modify(job_id, lambda job: (setattr(job, "status", JobStatus.PROCESSING),
                                                  setattr(job, "outputs", {WINDOWS: output_blob_path(job_id, WINDOWS)})))

    link = api.get(f"/jobs/{job_id}").json()["links"]["windows_csv"]
    assert link == f"/jobs/{job_id}/exports/windows.csv"
    response = api.get(link, params={"download": "true"})
    assert response.status_code == 200 and response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == f'attachment; filename="{job_id}-windows.csv"'
    rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8"), newline="")))
    assert [(r["window"], r["unique"], r["unique cow"], r["unique bœuf"]) for r in rows] == [
        ("1", "1", "1", "0"), ("2", "1", "0", "1")]
    assert [(r["gate in"], r["gate out"], r["pen, north max_occupancy"]) for r in rows] == [
        ("1", "0", "1"), ("0", "0", "0")]
    assert rows[1]["frames_dropped"] == "2" and rows[0]["from"].endswith("Z")
    assert response.content.count(b"\r\n") == 3  # RFC 4180: a header and two rows, CRLF-terminated
