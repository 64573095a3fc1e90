"""Turning an upload into a queued job (api/submission.py, api/params.py, api/uploads.py, api/media.py), on both backends (local and
Azurite): form fields become checked parameters, the video is stored before the record and
the record before the message, a failure undoes what was stored, an idempotency key or a
direct upload posted twice makes one job, and abandoned direct uploads are swept."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from api.media import LocalMedia, MediaKind, StoredMedia, probe_file, sniff_media
from api.params import check_idempotency_key, check_stream_request, parse_params
from api.submission import Submitter
from api.uploads import upload_data_path, upload_meta_path, upload_prefix
from core.backends import Backends
from core.config import Settings
from core.errors import (
    CorruptImage,
    InvalidInput,
    JobTooLarge,
    NotAVideo,
    NotFound,
    StorageUnavailable,
    UploadAlreadyUsed,
    UploadTooLarge,
    VideoTooLarge,
)
from core.jobs import DEFAULT_OWNER, JobMessage, JobStatus, ManifestEntry, manifest_blob_path, utcnow
from core.model_card import ModelCard, public_model_id, publish_card
from tests.faults import FailingMethod
from tests.fixtures_stills import image_bytes, truncated_tiff, zip_of
from tests.fixtures_video import write_clip, write_text_file

LEASE = timedelta(seconds=30)


@pytest.fixture
def submitter(make_settings, backends: Backends) -> Submitter:
    return Submitter(make_settings("local"), backends)


def blob_paths(backends: Backends, prefix: str = "") -> list[str]:
    return sorted(blob.path for blob in backends.blobs.list(prefix))


def queued_job_ids(backends: Backends) -> list[str]:
    ids = []
    while (message := backends.queue.receive(LEASE)) is not None:
        ids.append(JobMessage.decode(message.body).job_id)
    return ids


def finished_upload(submitter: Submitter, video: Path, owner: str = DEFAULT_OWNER) -> str:
    """A direct upload as a client makes one: reserve it, then PUT the bytes."""
    upload_id, _, _ = submitter.uploads.reserve(video.name, owner)
    submitter.backends.blobs.upload_file(upload_data_path(upload_id), video)
    return upload_id


# --- parameters (no backend) ---------------------------------------------------------------


def test_form_fields_become_params_and_fields_override_the_json_object(make_settings) -> None:
    fields = {
        "params": json.dumps({"threshold": 0.9, "frame_stride": 3}),
        "threshold": "0.4",
        "classes": "Cow, sheep",
        "lines": "0,10,100,10; 5,5,6,6",
        "upload_id": "ignored",
        "zones": "  ",  # blank fields are as good as absent
    }
    params = parse_params(fields, make_settings("local"))
    assert params.threshold == pytest.approx(0.4) and params.frame_stride == 3
    assert params.classes == ["cow", "sheep"]
    assert [(line.start, line.end) for line in params.lines] == [((0, 10), (100, 10)), ((5, 5), (6, 6))]
    assert params.zones == []


@pytest.mark.parametrize(
    "fields, words",
    [
        ({"params": "{not json"}, "params: not valid JSON"),
        ({"params": "[1]"}, "params: expected a JSON object"),
        ({"zones": "{}"}, "zones: expected a JSON list"),
        ({"params": "[" * 100_000}, "params: JSON nested too deeply"),  # not a 500
        ({"lines": "1,2,3"}, "lines: expected 'x1,y1,x2,y2' (or a JSON list), got '1,2,3'"),
        ({"threshold": "2"}, "threshold: Input should be less than or equal to 1"),
        ({"frame_stride": "0", "threshold": "-1"}, "threshold: "),  # every bad field is named
        ({"model_id": "other/model"}, "does not allow choosing the model (ALLOW_MODEL_OVERRIDE=false)"),
        ({"callback_url": "http://127.0.0.1:9/hook"}, "non-public"),
    ],
)
def test_bad_parameters_are_refused_naming_the_field(make_settings, fields: dict[str, str], words: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_params(fields, make_settings("local"))
    assert words in str(caught.value) and caught.value.http_status == 422
    if "frame_stride" in fields:
        assert "frame_stride: " in str(caught.value)


def test_a_model_can_be_chosen_where_the_service_allows_it(make_settings) -> None:
    settings = make_settings("local", allow_model_override=True)
    assert parse_params({"model_id": "other/model"}, settings).model_id == "other/model"


@pytest.mark.parametrize("key, expected", [(None, None), ("  order-17 ", "order-17"), ("k" * 200, "k" * 200)])
def test_an_idempotency_key_is_trimmed(key: str | None, expected: str | None) -> None:
    assert check_idempotency_key(key) == expected


@pytest.mark.parametrize("key", ["", "   ", "k" * 201, "line\nbreak"])
def test_an_unusable_idempotency_key_is_refused(key: str) -> None:
    with pytest.raises(InvalidInput, match="Idempotency-Key must be 1-200 printable characters"):
        check_idempotency_key(key)


def test_a_video_past_the_pixel_limit_is_refused_by_its_bytes(make_settings, small_clip: Path) -> None:
    info = probe_file(small_clip, make_settings("local"))
    with pytest.raises(VideoTooLarge, match="MAX_VIDEO_PIXELS"):
        probe_file(small_clip, make_settings("local", max_video_pixels=info.width * info.height - 1))


@pytest.mark.parametrize("upload_id", ["../jobs", "a/b", "", "x" * 65, "ünï"])
def test_an_upload_id_that_could_name_another_path_is_refused(upload_id: str) -> None:
    with pytest.raises(InvalidInput, match="not a valid upload id"):
        upload_prefix(upload_id)


# --- submitting a file -----------------------------------------------------------------------


def test_a_file_is_stored_recorded_and_queued(submitter: Submitter, small_clip: Path) -> None:
    params = parse_params({"classes": "cow"}, submitter.settings)
    job, created = submitter.submit_file(small_clip, "herd.mp4", params, "key-1", owner="farm-a")
    assert created and job.status is JobStatus.QUEUED and job.owner == "farm-a"
    assert job.filename == "herd.mp4" and job.size_bytes == small_clip.stat().st_size
    backends = submitter.backends
    assert b"".join(backends.blobs.open_range(job.input_blob)) == small_clip.read_bytes()
    assert backends.jobs.get(job.id).params.classes == ["cow"]
    assert queued_job_ids(backends) == [job.id]


def test_the_same_idempotency_key_returns_the_first_job_and_stores_nothing_more(
    submitter: Submitter, small_clip: Path
) -> None:
    params = parse_params({}, submitter.settings)
    first, _ = submitter.submit_file(small_clip, "a.mp4", params, "key-1")
    stored = blob_paths(submitter.backends)
    again, created = submitter.submit_file(small_clip, "a.mp4", params, "key-1")
    assert not created and again.id == first.id
    assert blob_paths(submitter.backends) == stored  # the second copy of the video was removed
    assert queued_job_ids(submitter.backends) == [first.id]


def test_when_enqueueing_fails_the_record_and_the_video_are_removed(
    make_settings, backends: Backends, small_clip: Path
) -> None:
    queue_down = FailingMethod(backends.queue, "send", StorageUnavailable("queue unreachable"))
    submitter = Submitter(make_settings("local"), replace(backends, queue=queue_down))
    with pytest.raises(StorageUnavailable) as caught:
        submitter.submit_file(small_clip, "a.mp4", parse_params({}, submitter.settings), "key-1")
    assert caught.value.http_status == 503  # the client may retry
    assert blob_paths(backends) == []
    assert backends.jobs.list().jobs == []  # no job left queued without a message

    retried, created = Submitter(make_settings("local"), backends).submit_file(
        small_clip, "a.mp4", parse_params({}, submitter.settings), "key-1")
    assert created and queued_job_ids(backends) == [retried.id]  # the key was not used up


# --- lines and zones in the video's frame ---------------------------------------------------------


def test_a_line_outside_the_frame_is_refused_naming_it_and_the_frame_before_anything_is_stored(
    submitter: Submitter, small_clip: Path
) -> None:
    """``lines=0,5000,100,5000`` on a small clip used to complete with 0 crossings and no warning."""
    params = parse_params({"lines": "0,10,320,10;0,5000,100,5000"}, submitter.settings)
    with pytest.raises(InvalidInput) as caught:
        submitter.submit_file(small_clip, "a.mp4", params, None)
    assert caught.value.http_status == 422
    assert str(caught.value).startswith("lines: line 'line-2' has the point (0, 5000) outside the video's frame, "
                                        "320x240 pixels")
    assert blob_paths(submitter.backends) == [] and queued_job_ids(submitter.backends) == []


def test_relative_units_become_pixels_of_the_frame_as_decoded(submitter: Submitter, tmp_path: Path) -> None:
    """A phone's portrait clip is stored 320x240 with a 90 degree display matrix: frames are
    decoded 240x320, and that is the frame lines and zones are placed in."""
    portrait = write_clip(tmp_path / "portrait.mp4", frames=3, rotation=90)
    raw = {"lines": [{"name": "gate", "start": [0, 0.5], "end": [1, 0.5], "units": "relative"}],
           "zones": [{"polygon": [[0, 0], [1, 0], [1, 1]], "units": "relative"}, {"polygon": [[0, 0], [240, 0], [0, 320]]}]}
    job, _ = submitter.submit_file(portrait, "portrait.mp4", parse_params({"params": json.dumps(raw)},
                                                                          submitter.settings), None)
    stored = submitter.backends.jobs.get(job.id).params
    assert [(line.start, line.end, line.units) for line in stored.lines] == [((0, 160), (240, 160), "pixels")]
    assert [zone.polygon for zone in stored.zones] == [[(0, 0), (240, 0), (240, 320)], [(0, 0), (240, 0), (0, 320)]]
    assert "units" not in stored.model_dump_json()  # a stored job holds pixels only


def test_a_direct_upload_places_relative_lines_and_a_replay_with_them_is_the_same_request(
    submitter: Submitter, small_clip: Path
) -> None:
    upload_id = finished_upload(submitter, small_clip)
    relative = parse_params({"lines": json.dumps([{"start": [0.25, 0], "end": [0.25, 1], "units": "relative"}])},
                            submitter.settings)
    job, created = submitter.submit_upload(upload_id, relative, "key-1")
    assert created and [(line.start, line.end) for line in job.params.lines] == [((80, 0), (80, 240))]
    again, created = submitter.submit_upload(upload_id, relative, "key-1")  # not idempotency_key_reused
    assert not created and again.id == job.id
    with pytest.raises(InvalidInput, match="used for a different request"):
        submitter.submit_upload(upload_id, parse_params({"lines": "0,0,80,240"}, submitter.settings), "key-1")


def test_an_upload_with_a_zone_outside_the_frame_stays_for_a_corrected_request(
    submitter: Submitter, small_clip: Path
) -> None:
    upload_id = finished_upload(submitter, small_clip)
    outside = parse_params({"zones": json.dumps([{"name": "pen", "polygon": [[0, 0], [400, 0], [0, 100]]}])},
                           submitter.settings)
    with pytest.raises(InvalidInput, match=r"zones: zone 'pen' has the point \(400, 0\) outside the video's frame"):
        submitter.submit_upload(upload_id, outside, None)
    assert queued_job_ids(submitter.backends) == []
    job, created = submitter.submit_upload(upload_id, parse_params({}, submitter.settings), None)
    assert created and job.input_blob == upload_data_path(upload_id)


def test_a_stream_refuses_relative_units_it_has_no_frame_to_place_by(make_settings) -> None:
    body = {"source_url": "rtsp://8.8.8.8/cam",
            "zones": [{"polygon": [[0, 0], [1, 0], [1, 1]], "units": "relative"}]}
    with pytest.raises(InvalidInput, match="videos only"):
        check_stream_request(body, make_settings("local"))


def test_classes_the_published_model_does_not_know_are_refused_before_anything_is_stored(
    submitter: Submitter, small_clip: Path
) -> None:
    model_id = submitter.settings.model_id
    publish_card(submitter.backends.blobs, ModelCard(model_id=model_id, architecture="rt_detr_v2",
                                                     classes=["cow", "sheep"], random_weights=True, device="cpu"))
    stored = blob_paths(submitter.backends)
    params = parse_params({"classes": "cow,zebra"}, submitter.settings)
    with pytest.raises(InvalidInput) as caught:
        submitter.submit_file(small_clip, "a.mp4", params, None)
    assert str(caught.value) == f"classes: 'zebra' not known to model {model_id}; valid names: cow, sheep"
    assert blob_paths(submitter.backends) == stored and queued_job_ids(submitter.backends) == []


def test_a_local_model_is_named_by_its_folder_never_by_its_server_path(
    make_settings, backends: Backends, small_clip: Path, tmp_path: Path
) -> None:
    checkpoint = tmp_path / "models" / "rtdetr-tiny"
    checkpoint.mkdir(parents=True)
    submitter = Submitter(make_settings("local", model_id=str(checkpoint)), backends)
    # a card as workers wrote it before they named local models by their folder: the path itself
    publish_card(backends.blobs, ModelCard(model_id=str(checkpoint), architecture="rt_detr_v2", classes=["cow"],
                                           random_weights=True, device="cpu"))
    with pytest.raises(InvalidInput) as caught:
        submitter.submit_file(small_clip, "a.mp4", parse_params({"classes": "zebra"}, submitter.settings), None)
    assert "not known to model local:rtdetr-tiny;" in str(caught.value)
    assert str(tmp_path) not in str(caught.value)


@pytest.mark.parametrize("model_id, shown", [
    ("PekingU/rtdetr_v2_r18vd", "PekingU/rtdetr_v2_r18vd"),
    ("PekingU/rtdetr_v2_r18vd@no_timm", "PekingU/rtdetr_v2_r18vd@no_timm"),
    ("/srv/models/cows-v3/", "local:cows-v3"),
    ("./checkpoints/cows", "local:cows"),
    ("~/models/cows", "local:cows"),
    ("C:\\models\\cows", "local:cows"),
])
def test_public_model_ids(model_id: str, shown: str) -> None:
    assert public_model_id(model_id) == shown


# --- direct uploads --------------------------------------------------------------------------


def test_a_direct_upload_becomes_exactly_one_job(submitter: Submitter, small_clip: Path) -> None:
    upload_id = finished_upload(submitter, small_clip)
    params = parse_params({}, submitter.settings)
    job, created = submitter.submit_upload(upload_id, params, None)
    assert created and job.input_blob == upload_data_path(upload_id) and job.filename == small_clip.name
    assert job.input_etag == submitter.backends.blobs.info(job.input_blob).etag  # pinned to what was probed

    again, created_again = submitter.submit_upload(upload_id, params, "another-key")
    assert not created_again and again.id == job.id
    assert queued_job_ids(submitter.backends) == [job.id]
    with pytest.raises(UploadAlreadyUsed, match=f"already job {job.id}") as caught:
        submitter.uploads.check_open(upload_id)  # its input must not change under the job
    assert caught.value.http_status == 409


def test_an_upload_is_unknown_to_another_tenant(submitter: Submitter, small_clip: Path) -> None:
    upload_id = finished_upload(submitter, small_clip, owner="farm-a")
    with pytest.raises(InvalidInput, match=f"unknown upload '{upload_id}'"):
        submitter.submit_upload(upload_id, parse_params({}, submitter.settings), None, owner="farm-b")
    with pytest.raises(NotFound, match="unknown upload"):  # PUT /uploads/{id}: 404, as a missing one
        submitter.uploads.check_open(upload_id, owner="farm-b")
    assert queued_job_ids(submitter.backends) == []


def test_an_upload_with_nothing_put_asks_for_the_video(submitter: Submitter) -> None:
    upload_id, _, _ = submitter.uploads.reserve("a.mp4")
    with pytest.raises(InvalidInput, match=r"nothing was uploaded .* \(PUT the video first\)"):
        submitter.submit_upload(upload_id, parse_params({}, submitter.settings), None)
    submitter.uploads.check_open(upload_id)  # still open: the client can PUT and post again


def test_an_upload_that_is_not_a_video_is_refused_and_removed(submitter: Submitter, tmp_path: Path) -> None:
    upload_id = finished_upload(submitter, write_text_file(tmp_path / "notes.mp4"))
    with pytest.raises(NotAVideo):
        submitter.submit_upload(upload_id, parse_params({}, submitter.settings), None)
    assert blob_paths(submitter.backends, upload_prefix(upload_id)) == []
    assert queued_job_ids(submitter.backends) == []


@pytest.mark.parametrize("kind", [MediaKind.VIDEO, MediaKind.IMAGE, MediaKind.ZIP])
def test_one_sniffer_tells_a_form_file_and_a_direct_upload_alike(
    submitter: Submitter, small_clip: Path, tmp_path: Path, kind: MediaKind
) -> None:
    """The form path (a scratch file) and the direct-upload path (a blob, its video probed by
    ranged reads) ask the same function, so a file is the same thing whichever way it came."""
    path = {MediaKind.VIDEO: small_clip,
            MediaKind.IMAGE: tmp_path / "still.png",
            MediaKind.ZIP: tmp_path / "stills.zip"}[kind]
    if kind is MediaKind.IMAGE:
        path.write_bytes(image_bytes("PNG"))
    if kind is MediaKind.ZIP:
        path.write_bytes(zip_of({"a.png": image_bytes("PNG")}))
    upload_id = finished_upload(submitter, path)
    local = sniff_media(LocalMedia(path), submitter.settings)
    stored = sniff_media(StoredMedia(submitter.backends.blobs, upload_data_path(upload_id)), submitter.settings)
    assert local == stored and local.kind is kind
    assert (local.video is not None) == (kind is MediaKind.VIDEO)


def test_a_direct_upload_of_a_video_is_sniffed_without_downloading_it(submitter: Submitter, small_clip: Path) -> None:
    """Only a file that starts like an image is copied to scratch; a video of gigabytes is probed
    where it lies."""
    upload_id = finished_upload(submitter, small_clip)
    no_downloads = FailingMethod(submitter.backends.blobs, "download_to_file", AssertionError("downloaded"))
    sniffed = sniff_media(StoredMedia(no_downloads, upload_data_path(upload_id)), submitter.settings)
    assert sniffed.kind is MediaKind.VIDEO and sniffed.video == probe_file(small_clip, submitter.settings)


def test_an_upload_of_a_corrupt_image_is_told_so_and_removed(submitter: Submitter, tmp_path: Path) -> None:
    """As the form tells a corrupt TIFF (415 corrupt_image), not that it is no video."""
    cut = tmp_path / "cut.tif"
    cut.write_bytes(truncated_tiff())
    upload_id = finished_upload(submitter, cut)
    with pytest.raises(CorruptImage) as caught:
        submitter.submit_upload(upload_id, parse_params({}, submitter.settings), None)
    assert caught.value.code == "corrupt_image" and caught.value.http_status == 415
    assert blob_paths(submitter.backends, upload_prefix(upload_id)) == []
    assert queued_job_ids(submitter.backends) == []


def test_an_upload_of_a_zip_is_sent_to_the_form_and_removed(submitter: Submitter, tmp_path: Path) -> None:
    archive = tmp_path / "stills.zip"
    archive.write_bytes(zip_of({"a.png": image_bytes("PNG")}))
    upload_id = finished_upload(submitter, archive)
    with pytest.raises(NotAVideo, match="send a ZIP of images in the multipart field 'file'"):
        submitter.submit_upload(upload_id, parse_params({}, submitter.settings), None)
    assert blob_paths(submitter.backends, upload_prefix(upload_id)) == []
    assert queued_job_ids(submitter.backends) == []


def test_an_upload_past_the_size_limit_is_refused_and_removed(
    make_settings, backends: Backends, small_clip: Path
) -> None:
    limit = small_clip.stat().st_size - 1
    submitter = Submitter(make_settings("local", max_upload_bytes=limit), backends)
    upload_id = finished_upload(submitter, small_clip)  # a write URL cannot cap the size
    with pytest.raises(UploadTooLarge, match=f"the limit is {limit} \\(MAX_UPLOAD_BYTES\\)"):
        submitter.submit_upload(upload_id, parse_params({}, submitter.settings), None)
    assert blob_paths(backends, upload_prefix(upload_id)) == []


def test_an_expired_upload_is_closed(submitter: Submitter) -> None:
    upload_id, _, _ = submitter.uploads.reserve("a.mp4")
    meta_path = upload_meta_path(upload_id)
    meta = json.loads(b"".join(submitter.backends.blobs.open_range(meta_path)))
    meta["expires_at"] = (utcnow() - timedelta(seconds=1)).isoformat()
    submitter.backends.blobs.upload_stream(meta_path, [json.dumps(meta).encode()], "application/json")
    with pytest.raises(InvalidInput, match="has expired; ask for a new one"):
        submitter.uploads.check_open(upload_id)


def test_the_sweep_removes_only_abandoned_uploads(submitter: Submitter, small_clip: Path) -> None:
    abandoned = finished_upload(submitter, small_clip)
    used = finished_upload(submitter, small_clip)
    job, _ = submitter.submit_upload(used, parse_params({}, submitter.settings), None)
    blobs = submitter.backends.blobs
    blobs.upload_stream("uploads/not..ours/x", [b"x"])  # not an upload id: not ours to judge

    assert submitter.uploads.sweep_abandoned() == 0  # nothing is old yet
    later = utcnow() + timedelta(seconds=submitter.settings.upload_url_ttl_s) + timedelta(days=1, minutes=1)
    assert submitter.uploads.sweep_abandoned(now=later) == 1
    assert blob_paths(submitter.backends, upload_prefix(abandoned)) == []
    assert blobs.exists(job.input_blob)  # a job's input is kept
    assert blobs.exists("uploads/not..ours/x")


# --- images jobs: what a job may cost, and how its files are named -------------------------------


def sparse_geotiff(path: Path, width: int, height: int) -> Path:
    """A tiled GeoTIFF whose blocks are never written: gigapixels in a few hundred KB."""
    import rasterio

    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=3, dtype="uint8",
                       crs="EPSG:32633", transform=rasterio.Affine(0.05, 0, 500_000, 0, -0.05, 5_000_000), tiled=True,
                       blockxsize=256, blockysize=256, compress="deflate", sparse_ok=True, BIGTIFF="YES"):
        pass
    return path


def test_a_sparse_orthomosaic_of_gigapixels_is_refused_before_anything_is_stored(
    submitter: Submitter, tmp_path: Path
) -> None:
    ortho = sparse_geotiff(tmp_path / "ortho.tif", 49_000, 49_000)
    assert ortho.stat().st_size < 2_000_000  # megabytes sent, hours of a worker's time asked
    with pytest.raises(JobTooLarge, match=r"ortho\.tif is 49,000 x 49,000 px.*MAX_JOB_PIXELS"):
        submitter.submit_images([("ortho.tif", ortho)], "ortho.tif", parse_params({}, submitter.settings), None)
    assert blob_paths(submitter.backends) == [] and queued_job_ids(submitter.backends) == []


def test_the_default_job_pixels_admit_a_50k_orthomosaic_only_when_raised() -> None:
    defaults = Settings(_env_file=None)  # type: ignore[call-arg]
    assert defaults.max_job_pixels < 50_000 * 50_000 <= defaults.max_raster_pixels


def test_a_files_error_names_it_as_the_client_sent_it(submitter: Submitter, tmp_path: Path) -> None:
    scratch = tmp_path / "entry-0"  # as a ZIP's entry is unpacked
    scratch.write_text("not an image")
    image = tmp_path / "entry-1"
    image.write_bytes(image_bytes("PNG", 32, 32))
    job, _ = submitter.submit_images([("notes.txt", scratch), ("a.png", image)], "set.zip",
                                     parse_params({}, submitter.settings), None)
    lines = b"".join(submitter.backends.blobs.open_range(manifest_blob_path(job.id))).splitlines()
    failed = [entry for entry in map(ManifestEntry.from_line, lines) if entry.error is not None]
    assert [(entry.name, entry.error.message.split(":")[0]) for entry in failed if entry.error] == \
        [("notes.txt", "notes.txt")]
