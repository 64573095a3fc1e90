"""A live HLS camera: PyAV's FFmpeg (libx264, the ``hls`` muxer) writes frames in real time into a
live playlist with ``EXT-X-PROGRAM-DATE-TIME``, as a camera or a restreamer does.

Frame ``i`` is taken at ``started + i / fps`` (``camera.json`` says ``started``) and carries
its number as 16 black or white stripes (``frame_number`` reads it back), so a test can tell
which frame it got and when it was taken. Runs until killed; serve ``--directory`` over HTTP.

    python tests/hls_camera.py --directory /tmp/hls --fps 10 --segment-s 1
"""

from __future__ import annotations

import argparse
import json
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

BITS = 16


def marked_frame(index: int, width: int, height: int) -> np.ndarray:
    """A frame whose stripes spell ``index`` in binary (most significant bit on the left),
    over a grey that moves so the encoder has something to do."""
    image = np.full((height, width, 3), 60 + (index * 3) % 120, dtype=np.uint8)
    stripe = width // BITS
    for bit in range(BITS):
        value = 255 if (index >> (BITS - 1 - bit)) & 1 else 0
        image[: height // 2, bit * stripe:(bit + 1) * stripe] = value
    return image


def frame_number(image: np.ndarray) -> int:
    """The number ``marked_frame`` drew, read from the middle of each stripe."""
    height, width = image.shape[:2]
    stripe = width // BITS
    row = image[height // 4, :, :].mean(axis=1)
    bits = [int(row[bit * stripe + stripe // 2] > 127) for bit in range(BITS)]
    return int("".join(map(str, bits)), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--directory", type=Path, required=True)
    parser.add_argument("--fps", type=int, default=10)
    parser.add_argument("--segment-s", type=float, default=1.0)
    parser.add_argument("--list-size", type=int, default=6)
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument("--height", type=int, default=120)
    args = parser.parse_args()
    output = av.open(str(args.directory / "index.m3u8"), "w", format="hls", options={
        "hls_time": str(args.segment_s), "hls_list_size": str(args.list_size),
        "hls_flags": "delete_segments+omit_endlist+independent_segments+program_date_time",
    })
    stream = output.add_stream("libx264", rate=args.fps, options={
        "preset": "ultrafast", "tune": "zerolatency", "g": str(round(args.fps * args.segment_s))})
    stream.width, stream.height, stream.pix_fmt = args.width, args.height, "yuv420p"
    started = time.time()
    (args.directory / "camera.json").write_text(json.dumps({"started": started, "fps": args.fps}))
    index = 0
    while True:  # killed when done
        wait = started + index / args.fps - time.time()
        if wait > 0:
            time.sleep(wait)
        frame = av.VideoFrame.from_ndarray(marked_frame(index, args.width, args.height), format="rgb24")
        frame.pts, frame.time_base = index, Fraction(1, args.fps)
        for packet in stream.encode(frame):
            output.mux(packet)
        index += 1


if __name__ == "__main__":
    main()
