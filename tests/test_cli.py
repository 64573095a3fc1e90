"""The command line, ``python -m ml_engine``: real runs of the real pipeline with a tiny checkpoint.

Most tests call ``main(argv)`` in-process (the same code path as the console, minus the
interpreter start); a few start ``python -m ml_engine`` as users do, to check exit codes,
one-line errors and Ctrl-C.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ml_engine.__main__ import main
from ml_engine.outputs import validate_stats
from tests.fixtures_video import write_clip

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
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, stderr
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
    """Issue 14: ``python -m ml_engine photo.png`` counts the image (it used to be 'not a video')."""
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
    assert "usage:" in capsys.readouterr().err


# --- as a real process ----------------------------------------------------------------------------


def test_process_run_and_offline_hub_error(small_clip, tiny_rtdetr_dir, tmp_path):
    done = run_cli(str(small_clip), "-o", str(tmp_path / "out"), "--model", str(tiny_rtdetr_dir), "--no-progress")
    assert done.returncode == 0, done.stderr
    assert "unique objects:" in done.stdout
    assert (tmp_path / "out" / "annotated.mp4").stat().st_size > 0

    offline = run_cli(str(small_clip), "-o", str(tmp_path / "hub"), "--model", "someone/not-a-model",
                      env={"HF_HUB_OFFLINE": "1"})
    assert offline.returncode == 1
    assert_one_line_error(offline.stderr, "someone/not-a-model", "MODEL_ID", "HF_HOME")


def test_a_checkpoint_whose_config_does_not_match_its_weights_is_a_one_line_model_error(
    small_clip, mismatched_checkpoint_dir, tmp_path
):
    done = run_cli(str(small_clip), "-o", str(tmp_path / "out"), "--model", str(mismatched_checkpoint_dir),
                   "--no-progress")
    assert done.returncode == 1
    assert_one_line_error(done.stderr, "model_error", str(mismatched_checkpoint_dir), "failed to run on cpu",
                          "config.json matches its weights")
    assert not (tmp_path / "out" / "stats.json").exists()


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
