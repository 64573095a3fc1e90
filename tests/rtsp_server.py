#!/usr/bin/python3
"""A real RTSP server for the live-stream tests and benchmarks: ``rtsp://127.0.0.1:PORT/cam``.

Run it with Debian's ``/usr/bin/python3``: it needs GStreamer's RTSP server through ``gi``
(packages gir1.2-gst-rtsp-server-1.0 gstreamer1.0-rtsp python3-gi gstreamer1.0-plugins-*,
installed by ``make rtsp``), which a venv's python cannot import.

    /usr/bin/python3 tests/rtsp_server.py --port 0 --width 160 --height 120 --fps 10
    /usr/bin/python3 tests/rtsp_server.py --video shared/assets/videos/vtest.avi --fps 100

It serves H.264 (x264 tuned for zero latency, a key frame every ``--gop-s`` seconds so a new
client starts decoding quickly) of either
- a synthetic live pattern (``videotestsrc is-live=true``: a ball sweeping over a moving
  background), or
- a video file (``--video``), decoded, scaled to ``--width``x``--height`` and looped for ever,
  sent at ``--fps`` whatever the file's own rate: 100 fps of a 10 fps file plays it at 10x.

``--resize-after S --resize WxH`` changes the frame size mid-stream after S seconds (a camera
whose resolution is changed while it streams). When it listens it prints one line,
``READY rtsp://127.0.0.1:PORT/cam`` (``--port 0``: a free port). All clients share one
pipeline; it is built when the first client connects and torn down when the last one leaves.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

MOUNT = "/cam"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="TCP port (0: a free one, printed when ready)")
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--fps", type=int, default=10, help="frames per second sent")
    parser.add_argument("--gop-s", type=float, default=1.0, help="seconds between key frames")
    parser.add_argument("--video", help="loop this video file instead of the synthetic pattern")
    parser.add_argument("--resize-after", type=float, help="change the frame size after this many seconds")
    parser.add_argument("--resize", help="the new size, WxH (with --resize-after)")
    return parser.parse_args(argv)


def encoder(args: argparse.Namespace) -> str:
    """Raw video in, RTP H.264 out (``pay0`` is the name the RTSP server looks for)."""
    gop = max(1, round(args.fps * args.gop_s))
    return (
        f"videoconvert ! video/x-raw,format=I420 ! "
        f"x264enc tune=zerolatency speed-preset=ultrafast key-int-max={gop} bframes=0 threads=1 ! "
        f"video/x-h264,profile=baseline ! rtph264pay name=pay0 pt=96 config-interval=-1"
    )


def raw_caps(args: argparse.Namespace, width: int, height: int) -> str:
    return f"video/x-raw,width={width},height={height},framerate={args.fps}/1"


def pattern_launch(args: argparse.Namespace) -> str:
    """The synthetic live source: a ball sweeping across a moving background."""
    return (
        f"( videotestsrc is-live=true pattern=ball motion=sweep background-color=0xff305080 "
        f"horizontal-speed=2 ! videoscale ! capsfilter name=size caps={raw_caps(args, args.width, args.height)} "
        f"! {encoder(args)} )"
    )


def file_launch(args: argparse.Namespace) -> str:
    """The file source: frames pushed by a FileLooper into a live appsrc, timestamped on arrival."""
    return (
        f"( appsrc name=frames is-live=true do-timestamp=true format=time "
        f"caps=video/x-raw,format=I420,width={args.width},height={args.height},framerate={args.fps}/1 "
        f"! videoscale ! capsfilter name=size caps={raw_caps(args, args.width, args.height)} ! {encoder(args)} )"
    )


class FileLooper:
    """Decodes the file (scaled, I420) in its own pipeline and pushes its frames into the
    media's appsrc at ``fps``, starting over at the end of the file, until the media goes away."""

    def __init__(self, args: argparse.Namespace, appsrc: Gst.Element) -> None:
        self.args = args
        self.appsrc = appsrc
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.run, name="file-looper", daemon=True)

    def reader(self) -> tuple[Gst.Pipeline, Gst.Element]:
        location = GLib.strescape(self.args.video)
        pipeline = Gst.parse_launch(
            f'filesrc location="{location}" ! decodebin ! videoconvert ! videoscale '
            f"! video/x-raw,format=I420,width={self.args.width},height={self.args.height} "
            f"! appsink name=out sync=false max-buffers=2 drop=false"
        )
        pipeline.set_state(Gst.State.PLAYING)
        return pipeline, pipeline.get_by_name("out")

    def run(self) -> None:
        interval = 1.0 / self.args.fps
        due = time.monotonic()
        while not self.stopped.is_set():
            pipeline, sink = self.reader()
            try:
                while not self.stopped.is_set():
                    sample = sink.emit("try-pull-sample", Gst.SECOND)
                    if sample is None:
                        if sink.get_property("eos"):
                            break  # the end of the file: start over
                        continue
                    # pace to fps: the appsrc is live, its timestamps are the arrival times. A
                    # short hitch (starting the file over) is caught up; a long one is not
                    # replayed as a burst: a camera does not send the frames it missed.
                    due = max(due + interval, time.monotonic() - 0.5)
                    time.sleep(max(0.0, due - time.monotonic()))
                    buffer = sample.get_buffer().copy()
                    buffer.pts = buffer.dts = Gst.CLOCK_TIME_NONE
                    if self.appsrc.emit("push-buffer", buffer) != Gst.FlowReturn.OK:
                        self.stopped.set()  # the media is shutting down
            finally:
                pipeline.set_state(Gst.State.NULL)

    def stop(self) -> None:
        self.stopped.set()


def schedule_resize(args: argparse.Namespace, pipeline: Gst.Element) -> None:
    """After ``--resize-after`` seconds, change the size the encoder is fed (x264 starts a new
    sequence with a new SPS, as a camera does when its resolution is changed)."""
    width, height = (int(part) for part in args.resize.lower().split("x"))
    capsfilter = pipeline.get_by_name("size")

    def resize() -> bool:
        capsfilter.set_property("caps", Gst.Caps.from_string(raw_caps(args, width, height)))
        print(f"RESIZED {width}x{height}", flush=True)
        return False  # once

    GLib.timeout_add(int(args.resize_after * 1000), resize)


def build_server(args: argparse.Namespace) -> GstRtspServer.RTSPServer:
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(file_launch(args) if args.video else pattern_launch(args))
    factory.set_shared(True)  # one pipeline for every client: the bench may connect several

    def configure(_factory: GstRtspServer.RTSPMediaFactory, media: GstRtspServer.RTSPMedia) -> None:
        pipeline = media.get_element()
        if args.video:
            looper = FileLooper(args, pipeline.get_by_name("frames"))
            media.connect("unprepared", lambda _media: looper.stop())
            looper.thread.start()
        if args.resize_after is not None:
            schedule_resize(args, pipeline)

    factory.connect("media-configure", configure)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    server.get_mount_points().add_factory(MOUNT, factory)
    return server


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if (args.resize_after is None) != (args.resize is None):
        print("--resize-after and --resize go together", file=sys.stderr)
        return 2
    Gst.init(None)
    server = build_server(args)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{args.port}", file=sys.stderr)
        return 1
    loop = GLib.MainLoop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signum, lambda *_: (loop.quit(), False)[1])
    print(f"READY rtsp://127.0.0.1:{server.get_bound_port()}{MOUNT}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
