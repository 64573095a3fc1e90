"""The command line, ``python -m ml_engine``: real runs of the real pipeline with a tiny checkpoint.

Most tests call ``main(argv)`` in-process (the same code path as the console, minus the
interpreter start); a few start ``python -m ml_engine`` as users do, to check exit codes,
one-line errors and Ctrl-C.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from allinone.cli import main as cattlecounter
from core.outputs import LIVE_PLAYLIST, STATS
from ml_engine.__main__ import is_stream_url, main, next_run_dir
from ml_engine.outputs import validate_stats
from tests.fixtures_rtsp import HlsStream
from tests.fixtures_video import write_clip
from tests.waiting import wait_until

REPO = Path(__file__).resolve().parents[1]
OUTPUT_FILES = {"annotated.mp4", "stats.json", "detections.jsonl", "coco.json", "mot.txt", "tracks.csv",
                "timeline.csv", "lines.csv", "gallery.json", "gallery.zip"}


def run_cli(*args: str, timeout: float = 120, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ml_engine", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def assert_one_line_error(stderr: str, *fragments: str) -> None:
    """One error line, with the one prefix (argparse's errors too); no traceback."""
    errors = [line for line in stderr.splitlines() if re.search(r"(^|: )error:", line)]
    assert len(errors) == 1 and errors[0].startswith("cattlecounter: error: "), stderr
    assert "Traceback" not in stderr
    for fragment in fragments:
        assert fragment in errors[0]


# --- successful runs ------------------------------------------------------------------------


def test_json_counts_and_all_outputs(small_clip, tiny_rtdetr_dir, tmp_path, capsys):
    out = tmp_path / "out"
    status = main([
        str(small_clip), "-o", str(out), "--model", str(tiny_rtdetr_dir), "--threshold", "0.3",
        "--line", "gate=160,0,160,240", "--zone", "0,0,160,0,160,240,0,240", "--classes", "COW,sheep",
        "--batch-size", "3", "--json", "--no-progress", "--tracker", "bytetrack", "--stitching", "off",
    ])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    printed = json.loads(captured.out)
    assert {path.name for path in out.iterdir()} - {"crops"} == OUTPUT_FILES
    stats = json.loads((out / "stats.json").read_text())
    # the gallery's pictures: one per counted animal
    pictures = sorted(path.name for path in (out / "crops").iterdir()) if (out / "crops").exists() else []
    assert pictures == sorted(f"{track['id']}.jpg" for track in stats["tracks"])
    validate_stats(stats)
    assert printed["counts"] == stats["counts"]
    assert set(stats["counts"]["by_class"]) <= {"cow", "sheep"}
    assert [line["name"] for line in printed["lines"]] == ["gate"]
    assert [zone["name"] for zone in printed["zones"]] == ["zone-1"]  # the API's default name too
    assert stats["video"]["frames"] == 20
    assert stats["processing"]["batch_size"] == 3
    assert (stats["processing"]["tracker"], stats["processing"]["stitching"]) == ("bytetrack", False)
    assert stats["model"]["random_weights"] is True
    assert "random weights" in captured.err  # the user is warned the counts are not real


def test_text_summary_flags_random_weights_and_names_the_output(small_clip, tiny_rtdetr_dir, tmp_path, capsys):
    out = tmp_path / "out"
    status = main([str(small_clip), "-o", str(out), "--model", str(tiny_rtdetr_dir), "--stride", "2",
                   "--line", "160,0,160,240", "--line", "0,120,320,120"])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    text = captured.out
    assert text.startswith("NOTE: random-weights model")
    assert "unique objects:" in text and f"results: {out}" in text
    assert "line line-1:" in text and "line line-2:" in text  # unnamed lines: the API's names
    stats = json.loads((out / "stats.json").read_text())
    assert stats["processing"]["frame_stride"] == 2
    assert stats["processing"]["frames_processed"] == 10


# --- errors: one line, exit status 1 ------------------------------------------------------------


@pytest.mark.parametrize("kind", ["text", "empty"])
def test_a_file_that_is_not_a_video_is_a_one_line_error(bad_videos, tiny_rtdetr_dir, tmp_path, capsys, kind):
    status = main([str(bad_videos[kind]), "-o", str(tmp_path / "out"), "--model", str(tiny_rtdetr_dir)])
    assert status == 1
    assert_one_line_error(capsys.readouterr().err)
    assert not (tmp_path / "out" / "annotated.mp4").exists()


def test_a_picture_is_counted_as_a_still_not_refused_as_a_video(bad_videos, tiny_rtdetr_dir, tmp_path, capsys):
    """``python -m ml_engine photo.png`` counts the image (it used to be 'not a video')."""
    status = main([str(bad_videos["png"]), "-o", str(tmp_path / "out"), "--model", str(tiny_rtdetr_dir),
                   "--no-progress"])
    assert status == 0, capsys.readouterr().err
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["kind"] == "stills" and stats["images"]["ok"] == 1
    assert (tmp_path / "out" / "annotated" / "picture.png.jpg").exists()
    assert not (tmp_path / "out" / "annotated.mp4").exists()


def test_an_image_that_cannot_be_read_is_a_one_line_error(tiny_rtdetr_dir, tmp_path, capsys):
    broken = tmp_path / "broken.tif"
    broken.write_bytes(b"II*\x00" + b"\x13" * 100)
    status = main([str(broken), "-o", str(tmp_path / "out"), "--model", str(tiny_rtdetr_dir), "--no-progress"])
    assert status == 1
    assert_one_line_error(capsys.readouterr().err, "corrupt_image", "broken.tif")


def test_unknown_class_names_list_the_valid_ones(small_clip, tiny_rtdetr_dir, tmp_path, capsys):
    status = main([str(small_clip), "-o", str(tmp_path / "out"), "--model", str(tiny_rtdetr_dir),
                   "--classes", "zebra"])
    assert status == 1
    assert_one_line_error(capsys.readouterr().err, "'zebra'", "cow, sheep, horse, person")


def test_missing_model_directory_says_what_to_set(small_clip, tmp_path, capsys):
    status = main([str(small_clip), "-o", str(tmp_path / "out"), "--model", str(tmp_path / "nope")])
    assert status == 1
    assert_one_line_error(capsys.readouterr().err, "does not exist", "MODEL_ID")


def test_repeated_line_names_fail_before_the_model_loads(small_clip, tmp_path, capsys):
    # the model does not exist: reaching it would be a different error
    status = main([str(small_clip), "-o", str(tmp_path / "out"), "--model", str(tmp_path / "nope"),
                   "--line", "gate=0,1,2,3", "--line", "gate=4,5,6,7"])
    assert status == 1
    assert_one_line_error(capsys.readouterr().err, "line names must be unique", "gate")


@pytest.mark.parametrize(
    "bad",
    [["--line", "1,2,3"], ["--line", "5,5,5,5"], ["--zone", "0,0,1,1"], ["--threshold", "2"], ["--stride", "0"],
     ["--stride", "2", "--interval", "1"], ["--line", "a,b,c,d"], ["--tracker", "sort"], ["--stitching", "maybe"]],
)
def test_bad_arguments_exit_with_usage(small_clip, tmp_path, capsys, bad):
    with pytest.raises(SystemExit) as raised:
        main([str(small_clip), "-o", str(tmp_path / "out"), *bad])
    assert raised.value.code == 2
    err = capsys.readouterr().err
    assert "usage:" in err
    assert_one_line_error(err)


# --- cattlecounter: the installed command ---------------------------------------------------------


def test_cattlecounter_count_is_this_cli_under_its_own_name(capsys):
    with pytest.raises(SystemExit) as raised:
        cattlecounter(["count", "--help"])
    assert raised.value.code == 0
    assert capsys.readouterr().out.startswith("usage: cattlecounter count")


def test_cattlecounter_lists_its_commands_and_refuses_another_with_the_one_prefix(capsys):
    with pytest.raises(SystemExit) as raised:
        cattlecounter(["--help"])
    assert raised.value.code == 0
    listing = capsys.readouterr().out
    assert all(re.search(rf"^\s+{command}\s", listing, re.MULTILINE) for command in ("run", "api", "worker", "count"))
    with pytest.raises(SystemExit) as raised:
        cattlecounter(["counts", "clip.mp4"])
    assert raised.value.code == 2
    assert_one_line_error(capsys.readouterr().err, "'counts'")


# --- where results go without -o, and what counts as a stream ------------------------------------


def test_without_o_results_go_to_runs_count_name_then_name_2(small_clip, tiny_rtdetr_dir, tmp_path, monkeypatch,
                                                            capsys):
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        assert main([str(small_clip), "--model", str(tiny_rtdetr_dir), "--no-progress", "--max-frames", "3"]) == 0
    runs = tmp_path / "runs" / "count"
    assert sorted(path.name for path in runs.iterdir()) == ["small", "small-2"]
    assert all((runs / name / "stats.json").is_file() for name in ("small", "small-2"))
    assert f"results: {runs / 'small-2'}" in capsys.readouterr().out


def test_a_failed_run_without_o_leaves_no_empty_results_folder(bad_videos, tiny_rtdetr_dir, tmp_path, monkeypatch,
                                                               capsys):
    monkeypatch.chdir(tmp_path)
    assert main([str(bad_videos["text"]), "--model", str(tiny_rtdetr_dir)]) == 1
    assert_one_line_error(capsys.readouterr().err)
    assert list((tmp_path / "runs" / "count").iterdir()) == []


def test_next_run_dir_takes_the_first_free_number(tmp_path):
    (tmp_path / "clip").mkdir()
    (tmp_path / "clip-2").mkdir()
    assert next_run_dir(tmp_path, "clip") == tmp_path / "clip-3" and (tmp_path / "clip-3").is_dir()


@pytest.mark.parametrize(("source", "stream"), [
    ("rtsp://viewer:pw@10.0.0.5/stream1", True), ("http://127.0.0.1:8080/live/index.m3u8", True),
    ("HTTPS://cams.example/a.m3u8", True), ("rtsps://cam/x", True),
    ("clip.mp4", False), ("http:clip.mp4", False), ("C:/videos/clip.mp4", False), ("file:///tmp/a.mp4", False),
])
def test_a_stream_url_is_told_from_a_file_name(source, stream):
    assert is_stream_url(source) is stream


def test_a_stream_that_never_answers_is_a_one_line_error_without_its_password(tiny_rtdetr_dir, tmp_path, capsys):
    from tests.fixtures_service import free_port

    url = f"rtsp://viewer:s3cret@127.0.0.1:{free_port()}/cam"  # nothing listens there
    status = main([url, "-o", str(tmp_path / "out"), "--model", str(tiny_rtdetr_dir), "--no-progress"])
    err = capsys.readouterr().err
    assert status == 1
    assert_one_line_error(err, "stream_unavailable")
    assert "s3cret" not in err


# --- as a real process ----------------------------------------------------------------------------


@pytest.mark.heavy
def test_process_run_and_offline_hub_error(small_clip, tiny_rtdetr_dir, tmp_path):
    done = run_cli(str(small_clip), "-o", str(tmp_path / "out"), "--model", str(tiny_rtdetr_dir), "--no-progress")
    assert done.returncode == 0, done.stderr
    assert "unique objects:" in done.stdout
    assert (tmp_path / "out" / "annotated.mp4").stat().st_size > 0

    offline = run_cli(str(small_clip), "-o", str(tmp_path / "hub"), "--model", "someone/not-a-model",
                      env={"HF_HUB_OFFLINE": "1"})
    assert offline.returncode == 1
    assert_one_line_error(offline.stderr, "someone/not-a-model", "MODEL_ID", "HF_HOME")


@pytest.mark.heavy
def test_a_checkpoint_whose_config_does_not_match_its_weights_is_a_one_line_model_error(
    small_clip, mismatched_checkpoint_dir, tmp_path
):
    done = run_cli(str(small_clip), "-o", str(tmp_path / "out"), "--model", str(mismatched_checkpoint_dir),
                   "--no-progress")
    assert done.returncode == 1
    assert_one_line_error(done.stderr, "model_error", str(mismatched_checkpoint_dir), "failed to run on cpu",
                          "config.json matches its weights")
    assert not (tmp_path / "out" / "stats.json").exists()


@pytest.mark.heavy
def test_an_hls_stream_is_counted_until_ctrl_c_then_its_outputs_are_final(hls_stream: HlsStream, tiny_rtdetr_dir,
                                                                         tmp_path):
    """The URL reaches the stream reader whole (a Path made it ``http:/127.0.0.1:…``), and
    Ctrl-C ends the stream rather than cancelling it: stats.json and the ended playlist."""
    out = tmp_path / "out"
    stderr_path = tmp_path / "stderr.txt"
    with stderr_path.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "ml_engine", hls_stream.url, "-o", str(out), "--model", str(tiny_rtdetr_dir),
             "--no-progress"], cwd=REPO, stdout=subprocess.PIPE, stderr=stderr, text=True,
        )
        try:
            # a closed segment: frames were decoded, counted and encoded
            wait_until(lambda: any(out.glob("live/*.ts")) or process.poll() is not None, 120, "a first segment")
            assert process.poll() is None, stderr_path.read_text()
            process.send_signal(signal.SIGINT)
            stdout, _ = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert process.returncode == 0, stderr_path.read_text()
    stats = json.loads((out / STATS).read_text())
    assert stats["kind"] == "stream" and stats["source"] == hls_stream.url and stats["frames"]["processed"] > 0
    assert (out / LIVE_PLAYLIST).read_text().rstrip().endswith("#EXT-X-ENDLIST")
    assert "unique objects:" in stdout and f"results: {out}" in stdout


@pytest.mark.heavy
def test_ctrl_c_cancels_cleanly(tiny_rtdetr_dir, tmp_path):
    clip = write_clip(tmp_path / "long.mp4", frames=1500)  # long enough to still be running when interrupted
    out = tmp_path / "out"
    stderr_path = tmp_path / "stderr.txt"
    with stderr_path.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "ml_engine", str(clip), "-o", str(out), "--model", str(tiny_rtdetr_dir)],
            # stdout is not read: DEVNULL, not a pipe left unclosed (a ResourceWarning) and unread
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=stderr, text=True,
        )
        try:
            _wait_for(lambda: "frame/s" in stderr_path.read_text() or process.poll() is not None, 120,
                      "the progress bar to start")
            assert process.poll() is None, stderr_path.read_text()
            process.send_signal(signal.SIGINT)
            process.wait(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert process.returncode == 130, stderr_path.read_text()
    assert "cancelled" in stderr_path.read_text() and "Traceback" not in stderr_path.read_text()
    assert not (out / "annotated.mp4").exists() and not (out / "stats.json").exists()


def _wait_for(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)
