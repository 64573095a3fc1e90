"""A live HLS camera the tests control: ``tests/hls_camera.py`` (PyAV's FFmpeg, no system
ffmpeg needed) writes a live playlist in real time, and ``python -m http.server`` serves it on
a loopback port, each in its own process.

- ``hls_camera``: 160x120 at 10 fps, 1 s segments, the newest 6 listed, each with its
  ``EXT-X-PROGRAM-DATE-TIME``. ``.url`` is ``http://127.0.0.1:PORT/index.m3u8``.
- ``start_hls_camera(directory, **options)``: the same outside pytest's fixtures (the bench);
  options: fps, segment_s, width, height. ``.stop()`` ends both processes.
- ``HlsCamera.captured_at(image)``: when the camera took a frame it delivered (the number its
  stripes spell, at ``started + number / fps``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.fixtures_service import free_port
from tests.hls_camera import frame_number
from tests.waiting import answers, wait_until

CAMERA_SCRIPT = Path(__file__).resolve().parent / "hls_camera.py"
START_TIMEOUT_S = 30.0  # the first segment is written after segment_s, later on a busy machine
STOP_TIMEOUT_S = 5.0


@dataclass
class HlsCamera:
    url: str
    directory: Path
    fps: int
    processes: list[subprocess.Popen[bytes]]

    @property
    def started(self) -> float:
        """time.time() when frame 0 was taken."""
        return float(json.loads((self.directory / "camera.json").read_text())["started"])

    def captured_at(self, image: np.ndarray) -> float:
        return self.started + frame_number(image) / self.fps

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(STOP_TIMEOUT_S)


def start_hls_camera(directory: Path, fps: int = 10, segment_s: float = 1.0, width: int = 160,
                     height: int = 120) -> HlsCamera:
    segments = directory / "hls-camera"
    segments.mkdir(parents=True)
    with (directory / "hls-camera.log").open("wb") as log:  # the children keep their own descriptors
        return _start(segments, log, fps, segment_s, width, height)


def _start(segments: Path, log: Any, fps: int, segment_s: float, width: int, height: int) -> HlsCamera:
    port = free_port()
    camera = subprocess.Popen(
        [sys.executable, str(CAMERA_SCRIPT), "--directory", str(segments), "--fps", str(fps),
         "--segment-s", str(segment_s), "--width", str(width), "--height", str(height)],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    http = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port),
                             "--directory", str(segments)],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    stream = HlsCamera(f"http://127.0.0.1:{port}/index.m3u8", segments, fps, [camera, http])
    try:
        wait_until(lambda: answers(stream.url) or camera.poll() is not None, START_TIMEOUT_S, "the HLS playlist")
        if camera.poll() is not None:
            raise AssertionError(f"the HLS camera exited ({camera.returncode}): see {segments.parent / 'hls-camera.log'}")
    except BaseException:
        stream.stop()
        raise
    return stream


@pytest.fixture
def hls_camera(tmp_path: Path) -> Iterator[HlsCamera]:
    camera = start_hls_camera(tmp_path)
    yield camera
    camera.stop()
