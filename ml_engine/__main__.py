"""Command line: count objects in a video file, an image, an orthomosaic, a folder of images or
a live stream. ``cattlecounter count`` and ``python -m ml_engine`` are this same command.

    cattlecounter count SOURCE [-o OUTDIR] [--model ID_OR_DIR] [--classes cow,sheep]
        [--threshold 0.5] [--stride N | --interval SECONDS] [--line [NAME=]x1,y1,x2,y2]...
        [--zone [NAME=]x1,y1,x2,y2,x3,y3,...]... [--batch-size N] [--device auto|cpu|cuda:N]
        [--tracker botsort|bytetrack] [--stitching on|off]

A video: writes annotated.mp4, stats.json, detections.jsonl, coco.json and mot.txt into
OUTDIR, shows a progress bar and prints the counts. An image (JPEG, PNG, TIFF, GeoTIFF) or a
folder of them: counts each image (``ml_engine.stills``) and writes stats.json, results.jsonl,
detections.jsonl, coco.json, annotated/ and, for georeferenced input, detections.geojson. A
stream URL (rtsp://, rtsps://, http(s):// HLS): counts until Ctrl-C, then writes its final
outputs (stats.json, windows.jsonl, the annotated HLS recording) and prints the counts.

Without ``-o`` the results go to ``runs/count/<name>`` (the input's name), or ``<name>-2``,
``<name>-3``, ... when that exists, as Ultralytics' ``runs/detect/predict2`` do. Errors print
one line starting ``cattlecounter: error:`` (no traceback) and exit with status 1 (2 for bad
arguments); Ctrl-C cancels a video or images cleanly (status 130), and ends a stream (status 0).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO
from urllib.parse import urlsplit

from core.config import Settings
from core.errors import CattleCounterError, InvalidInput, JobCancelled
from core.jobs import CountingLine, CountingZone, Tracker
from core.netpolicy import redact_url
from core.tiling import TilingSetting, parse_tiling

if TYPE_CHECKING:  # imported where used: --help answers without loading the engine
    from ml_engine.detection import DetectionConfig

EXIT_ERROR = 1
EXIT_CANCELLED = 130
ERROR = "cattlecounter: error:"  # every error line starts so, argparse's included
WARNING = "cattlecounter: warning:"
RUNS_DIR = Path("runs") / "count"
STREAM_SCHEMES = ("rtsp", "rtsps", "http", "https")


class _Parser(argparse.ArgumentParser):
    """argparse with the command's one error prefix (argparse's own is ``<prog>: error:``)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"{ERROR} {message}\n")


def _on_off(value: str) -> bool:
    """on/off (also true/false, yes/no, 1/0), as STITCHING accepts."""
    word = value.strip().lower()
    if word in ("on", "true", "yes", "1"):
        return True
    if word in ("off", "false", "no", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected on or off, got {value!r}")


def build_parser(prog: str = "python -m ml_engine") -> argparse.ArgumentParser:
    defaults = Settings.model_fields
    parser = _Parser(
        prog=prog,
        description="Detect, track and count objects in a video, images or a live stream.",
    )
    # a str, not a Path: Path("http://host/x") is "http:/host/x"
    parser.add_argument("video", metavar="SOURCE",
                        help="a video, an image (JPEG, PNG, TIFF, GeoTIFF), a folder of images, or a stream "
                             "URL (rtsp://, rtsps://, http(s):// HLS: counted until Ctrl-C)")
    parser.add_argument("-o", "--output", type=Path, default=None,
                        help=f"directory for the results (default: {RUNS_DIR}/<name>, then <name>-2, ...)")
    parser.add_argument(
        "--model",
        default=os.environ.get("MODEL_ID") or defaults["model_id"].default,
        help="Hugging Face hub id or local checkpoint directory (default: $MODEL_ID or %(default)s)",
    )
    parser.add_argument("--classes", type=_class_list, default=None, help="comma-separated class names to count")
    parser.add_argument("--threshold", type=_fraction, default=defaults["confidence_threshold"].default,
                        help="confidence threshold, 0..1 (default %(default)s)")
    stride = parser.add_mutually_exclusive_group()
    stride.add_argument("--stride", type=_positive_int, default=1, help="detect every Nth frame (default 1)")
    stride.add_argument("--interval", type=_positive_float, default=None, metavar="SECONDS",
                        help="detect one frame every SECONDS (instead of --stride)")
    parser.add_argument("--line", dest="lines", type=_line, action="append", default=[],
                        metavar="[NAME=]x1,y1,x2,y2",
                        help="a counting line in pixels; repeatable (unnamed: line-1, line-2, ...)")
    parser.add_argument("--zone", dest="zones", type=_zone, action="append", default=[],
                        metavar="[NAME=]x1,y1,x2,y2,x3,y3,...", help="a counting zone polygon in pixels; repeatable (unnamed: zone-1, ...)")
    parser.add_argument("--batch-size", type=_positive_int, default=defaults["batch_size"].default,
                        help="frames per inference batch (default %(default)s)")
    parser.add_argument("--tiling", type=_tiling, default=os.environ.get("TILING") or defaults["tiling"].default,
                        help="auto, off or a tile size WxH: cut frames much larger than the model's input into "
                             "overlapping tiles (default: $TILING or %(default)s)")
    parser.add_argument("--no-full-frame", dest="tiling_full_frame", action="store_false",
                        help="when tiling, skip the extra whole-frame view (it finds animals larger than a tile)")
    parser.add_argument("--tile-batch-size", type=_positive_int, default=defaults["tile_batch_size"].default,
                        help="most tiles in one forward pass (default %(default)s)")
    parser.add_argument("--device", default=os.environ.get("DEVICE") or "auto",
                        help="auto, cpu, cuda or cuda:N (default: $DEVICE or auto)")
    parser.add_argument("--input-size", type=_positive_int, default=None,
                        help="model input size override (default: the checkpoint's own)")
    parser.add_argument("--runtime", choices=("torch", "onnxruntime", "openvino", "auto"), default=os.environ.get("RUNTIME") or "torch",
                        help="what runs the model: torch, onnxruntime, openvino, or auto (the fastest that "
                             "matches torch; about 1.5x faster on a CPU) (default: $RUNTIME or torch)")
    parser.add_argument("--precision", choices=("fp32", "bf16", "int8"), default=os.environ.get("RUNTIME_PRECISION") or "fp32",
                        help="the runtime's arithmetic: fp32, or bf16/int8 with openvino (faster, less exact) "
                             "(default: $RUNTIME_PRECISION or fp32)")
    parser.add_argument("--min-hits", type=_positive_int, default=defaults["min_track_hits"].default,
                        help="detections before a track counts (default %(default)s)")
    parser.add_argument("--tracker", choices=[t.value for t in Tracker],
                        default=os.environ.get("TRACKER") or defaults["tracker"].default.value,
                        help="botsort: camera-motion compensated (drones); bytetrack: fixed cameras "
                             "(default: $TRACKER or %(default)s)")
    parser.add_argument("--stitching", type=_on_off, default=_on_off(os.environ.get("STITCHING") or "on"),
                        metavar="on|off",
                        help="re-link tracks broken by long gaps after the video (default: $STITCHING or on)")
    parser.add_argument("--max-frames", type=_positive_int, default=None, help="stop after this many frames")
    parser.add_argument("--max-raster-pixels", type=_positive_int,
                        default=int(os.environ.get("MAX_RASTER_PIXELS") or defaults["max_raster_pixels"].default),
                        help="largest image accepted, in pixels (default: $MAX_RASTER_PIXELS or %(default)s)")
    parser.add_argument("--json", action="store_true", help="print the counts as JSON instead of text")
    parser.add_argument("--no-progress", action="store_true", help="do not draw a progress bar")
    return parser


# --- argument types: each raises ArgumentTypeError with a message argparse shows --------------


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _tiling(text: str) -> TilingSetting:
    try:
        return parse_tiling(text)
    except InvalidInput as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_float(text: str) -> float:
    value = _float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _fraction(text: str) -> float:
    value = _float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _class_list(text: str) -> list[str]:
    names = [name.strip().lower() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected comma-separated class names, e.g. cow,sheep")
    return names


def _named_points(text: str, what: str, example: str) -> tuple[str | None, list[tuple[float, float]]]:
    name, _, numbers = text.rpartition("=")
    try:
        values = [float(part) for part in numbers.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"a {what} is comma-separated pixel coordinates, e.g. {example}") from None
    if len(values) % 2:
        raise argparse.ArgumentTypeError(f"a {what} needs x,y pairs, got {len(values)} numbers")
    return (name.strip() or None), list(zip(values[0::2], values[1::2], strict=True))


def _line(text: str) -> CountingLine:
    name, points = _named_points(text, "line", "--line gate=100,0,100,480")
    if len(points) != 2:
        raise argparse.ArgumentTypeError(f"a line is x1,y1,x2,y2 (4 numbers), got {2 * len(points)}")
    if points[0] == points[1]:
        raise argparse.ArgumentTypeError("a counting line needs two different points")
    return CountingLine(name=name, start=points[0], end=points[1])  # unnamed: line-N, as in the API


def _zone(text: str) -> CountingZone:
    name, points = _named_points(text, "zone", "--zone pen=0,0,200,0,200,150,0,150")
    if len(points) < 3:
        raise argparse.ArgumentTypeError(f"a zone needs at least 3 points (6 numbers), got {2 * len(points)}")
    return CountingZone(name=name, polygon=points)  # unnamed: zone-N, as in the API


# --- running --------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None, prog: str = "python -m ml_engine") -> int:
    """Run the CLI; returns the process exit status."""
    args = build_parser(prog).parse_args(argv)
    kind = _input_kind(args)
    made_output = args.output is None
    try:
        if made_output:
            args.output = next_run_dir(Path.cwd() / RUNS_DIR, _run_name(args.video))
        with _cancel_on_ctrl_c(ends_stream=kind == "stream") as cancelled:
            stats = _RUNS[kind](args, cancelled)
    except (JobCancelled, CattleCounterError) as exc:
        if made_output and args.output is not None:
            _remove_if_empty(args.output)  # a failed run leaves no empty runs/count/<name> behind
        if isinstance(exc, JobCancelled):
            print("cancelled: no results were written", file=sys.stderr)
            return EXIT_CANCELLED
        print(f"{ERROR} {exc.code}: {exc}", file=sys.stderr)  # the code, e.g. model_error, for scripts
        return EXIT_ERROR
    return _report(kind, stats, args)


def _input_kind(args: argparse.Namespace) -> str:
    """"stream", "stills" or "video"; a file's or folder's name becomes a Path."""
    if is_stream_url(args.video):
        return "stream"
    args.video = Path(args.video)
    return "stills" if is_stills_input(args.video) else "video"


def _report(kind: str, stats: dict[str, Any], args: argparse.Namespace) -> int:
    """Print the counts (text or JSON); the exit status."""
    if kind == "stills" and stats["images"]["ok"] == 0:  # nothing counted: an error, as for a bad video
        failure = stats["failed"][0]["error"]
        more = f" (and {len(stats['failed']) - 1} more files failed)" if len(stats["failed"]) > 1 else ""
        print(f"{ERROR} {failure['code']}: {failure['message']}{more}", file=sys.stderr)
        return EXIT_ERROR
    as_json, as_text = _PRINTERS[kind]
    if args.json:
        print(json.dumps(as_json(stats), indent=2))
    else:
        as_text(stats, args.output, sys.stdout)
    return 0


# --- where the input comes from and where the results go ----------------------------------------------


def is_stream_url(source: str) -> bool:
    """rtsp://, rtsps://, http:// or https://: a live stream, not a file name."""
    return urlsplit(source).scheme.lower() in STREAM_SCHEMES and "://" in source


def _run_name(source: str | Path) -> str:
    """The results folder's name: the file's or folder's name without suffix; a stream's last
    path part (``rtsp://cam/stream1``: stream1), else its host. Never a credential."""
    if isinstance(source, Path):
        name = source.resolve().stem if source.is_dir() else source.stem
    else:
        parts = urlsplit(source)
        name = Path(parts.path).stem or (parts.hostname or "")
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in name).strip("._")
    return safe or "run"


def next_run_dir(parent: Path, name: str) -> Path:
    """``parent/name``, or ``name-2``, ``name-3``, ... when taken: made here, so two runs
    started at once never share one."""
    parent.mkdir(parents=True, exist_ok=True)
    for number in range(1, 10_000):
        candidate = parent / (name if number == 1 else f"{name}-{number}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise InvalidInput(f"{parent} holds {name} to {name}-9999: pass -o")


def _remove_if_empty(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not empty, or already gone
        directory.rmdir()


# --- stills: an image, an orthomosaic or a folder of them -------------------------------------------

STILL_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff"})


def is_stills_input(path: Path) -> bool:
    """A folder, or a file named as an image: counted image by image rather than as a video."""
    return path.is_dir() or path.suffix.lower() in STILL_SUFFIXES


def still_files(path: Path) -> list[tuple[str, Path]]:
    """(name in the job, path) of each image: the file itself, or a folder's images (with its
    subfolders), names relative to the folder."""
    if not path.is_dir():
        return [(path.name, path)]
    found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in STILL_SUFFIXES)
    if not found:
        raise InvalidInput(f"{path} holds no images ({', '.join(sorted(STILL_SUFFIXES))})")
    return [(p.relative_to(path).as_posix(), p) for p in found]


def _run_stills(args: argparse.Namespace, cancelled: Callable[[], bool]) -> dict[str, Any]:
    from ml_engine.detector import Detector
    from ml_engine.stills import StillsConfig, StillsRun

    files = still_files(args.video)
    config = StillsConfig(detection=_detection_config(args), max_raster_pixels=args.max_raster_pixels)
    detector = Detector.load(args.model, device=args.device, input_size=args.input_size,
                             runtime=args.runtime, precision=args.precision)
    if args.classes:
        detector.class_ids(args.classes)
    if detector.random_weights:
        _warn_random_weights(args.model)
    run = StillsRun(args.output, detector, config)
    for name, path in files:
        with _tile_bar(name, enabled=not args.no_progress) as on_tiles:
            result = run.add_file(name, path, on_tiles=on_tiles, should_cancel=cancelled)
        if not result.ok and result.error and len(files) > 1:
            print(f"skipped {name}: {result.error['code']}: {result.error['message']}", file=sys.stderr)
    stats, _ = run.finish()
    return stats


@contextmanager
def _tile_bar(label: str, enabled: bool) -> Iterator[Callable[[int, int], None] | None]:
    if not enabled:
        yield None
        return
    from tqdm import tqdm

    with tqdm(desc=label, unit="tile", dynamic_ncols=True, file=sys.stderr) as bar:

        def on_tiles(done: int, total: int) -> None:
            bar.total = total
            bar.update(max(done - bar.n, 0))

        yield on_tiles


def _stills_counts(stats: dict[str, Any]) -> dict[str, Any]:
    return {key: stats[key] for key in ("images", "counts", "per_image", "failed", "georeference", "model")}


def print_stills(stats: dict[str, Any], output_dir: Path, out: TextIO) -> None:
    """The human summary of a stills run: per-class totals, the deduplicated total, failures."""
    if stats.get("model", {}).get("random_weights"):
        out.write("NOTE: random-weights model — these counts are not real detections\n")
    images, counts = stats["images"], stats["counts"]
    out.write(f"images: {images['ok']} counted, {images['failed']} failed, {images['georeferenced']} georeferenced\n")
    out.write(f"objects (sum over images): {counts['per_image_sum']}\n")
    for name, number in counts["by_class"].items():
        out.write(f"  {name}: {number}\n")
    dedup = counts["deduplicated"]
    if dedup.get("applied"):
        out.write(f"objects (deduplicated on the ground): {dedup['total']} {_by_class(dedup['by_class'])}\n")
    for failure in stats["failed"]:
        out.write(f"failed: {failure['name']}: {failure['error']['code']}\n")
    out.write(f"results: {output_dir}\n")


def _run(args: argparse.Namespace, cancelled: Callable[[], bool]) -> dict[str, Any]:
    # imported here so `--help` and argument errors answer without loading torch
    from ml_engine.detector import Detector
    from ml_engine.media.video import probe
    from ml_engine.pipeline import PipelineConfig, process_video

    config = PipelineConfig(
        detection=_detection_config(args),
        frame_stride=args.stride,
        frame_interval_seconds=args.interval,
        batch_size=args.batch_size,
        min_hits=args.min_hits,
        lines=args.lines,
        zones=args.zones,
        max_frames=args.max_frames,
        tracker=Tracker(args.tracker),
        stitching=args.stitching,
    )
    probe(args.video)  # a bad video fails before the model is loaded
    detector = Detector.load(args.model, device=args.device, input_size=args.input_size,
                             runtime=args.runtime, precision=args.precision)
    if args.classes:
        detector.class_ids(args.classes)  # unknown class names fail before the progress bar appears
    if detector.random_weights:
        _warn_random_weights(args.model)
    with _progress_bar(args.video.name, enabled=not args.no_progress) as on_progress:
        result = process_video(args.video, args.output, detector, config, progress=on_progress,
                               should_cancel=cancelled)
    return result.stats


def _detection_config(args: argparse.Namespace) -> DetectionConfig:
    """What to detect, from arguments argparse has already checked (threshold, tiling, classes)."""
    from ml_engine.detection import DetectionConfig

    return DetectionConfig(threshold=args.threshold, classes=args.classes, tiling=args.tiling,
                           full_frame=args.tiling_full_frame, tile_batch_size=args.tile_batch_size)


def _warn_random_weights(model: str) -> None:
    print(f"{WARNING} {model} has random weights: its detections are noise, not real objects", file=sys.stderr)


def _run_stream(args: argparse.Namespace, stop_requested: Callable[[], bool]) -> dict[str, Any]:
    """Count a live stream until Ctrl-C (``stop_requested``), then end its outputs."""
    from ml_engine.detector import Detector
    from ml_engine.live import QuietSink, StreamConfig, StreamRun

    class UntilCtrlC(QuietSink):
        def should_stop(self) -> bool:
            return stop_requested()

    config = StreamConfig(
        detection=_detection_config(args), min_hits=args.min_hits, lines=args.lines, zones=args.zones,
        tracker=Tracker(args.tracker),
    )
    detector = Detector.load(args.model, device=args.device, input_size=args.input_size,
                             runtime=args.runtime, precision=args.precision)
    if args.classes:
        detector.class_ids(args.classes)
    if detector.random_weights:
        _warn_random_weights(args.model)
    print(f"counting {redact_url(args.video)} into {args.output}: Ctrl-C ends the stream", file=sys.stderr)
    stats, _ = StreamRun(args.video, config, detector, args.output, sink=UntilCtrlC()).run()
    return stats


@contextmanager
def _cancel_on_ctrl_c(ends_stream: bool = False) -> Iterator[Callable[[], bool]]:
    """The first Ctrl-C asks the pipeline to stop between batches (a stream: to end, writing
    its final outputs); a second one interrupts at once."""
    requested = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield requested.is_set
        return
    notice = ("ending the stream: writing its final outputs" if ends_stream
              else "stopping after the current batch")

    def on_interrupt(signum: int, frame: Any) -> None:
        if requested.is_set():
            raise KeyboardInterrupt
        requested.set()
        print(f"\n{notice} (Ctrl-C again to abort now)", file=sys.stderr)

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        yield requested.is_set
    except KeyboardInterrupt:
        raise JobCancelled("interrupted") from None
    finally:
        signal.signal(signal.SIGINT, previous)


@contextmanager
def _progress_bar(label: str, enabled: bool) -> Iterator[Callable[[Any], None] | None]:
    if not enabled:
        yield None
        return
    from tqdm import tqdm

    with tqdm(desc=label, unit="frame", dynamic_ncols=True, file=sys.stderr) as bar:

        def on_progress(progress: Any) -> None:
            if progress.frames_total and bar.total != progress.frames_total:
                bar.total = progress.frames_total
            bar.update(max(progress.frames_done - bar.n, 0))

        yield on_progress


# --- output ---------------------------------------------------------------------------------------------


def _counts_document(stats: dict[str, Any]) -> dict[str, Any]:
    return {
        "counts": stats["counts"],
        "lines": stats.get("lines", []),
        "zones": stats.get("zones", []),
        "model": stats.get("model", {}),
        "processing": stats.get("processing", {}),
    }


def print_counts(stats: dict[str, Any], output_dir: Path, out: TextIO) -> None:
    """The human summary: unique objects per class, peak, line crossings, zone occupancy."""
    model = stats.get("model", {})
    counts = stats["counts"]
    if model.get("random_weights"):
        out.write("NOTE: random-weights model — these counts are not real detections\n")
    out.write(f"unique objects: {counts['total_unique']}\n")
    if counts.get("merged"):
        out.write(f"  ({counts['raw_total_unique']} tracker ids, {counts['merged']} re-linked after a gap)\n")
    for name, number in counts["by_class"].items():
        out.write(f"  {name}: {number}\n")
    peak = counts.get("peak") or {}
    if peak.get("count"):
        out.write(f"peak in one frame: {peak['count']} (frame {peak.get('frame')}, {peak.get('time_s')} s)\n")
    for line in stats.get("lines", []):
        out.write(f"line {line['name']}: in {line['in_total']} {_by_class(line['in'])}, "
                  f"out {line['out_total']} {_by_class(line['out'])}\n")
    for zone in stats.get("zones", []):
        out.write(f"zone {zone['name']}: max {zone['max_total']} at once, mean {zone['mean_total']}\n")
    processing = stats.get("processing", {})
    if processing:
        out.write(f"processed {processing.get('frames_decoded')} frames in {processing.get('seconds')} s "
                  f"({processing.get('fps')} frames/s on {processing.get('device')})\n")
    out.write(f"results: {output_dir}\n")


def _stream_counts(stats: dict[str, Any]) -> dict[str, Any]:
    return {key: stats[key] for key in ("counts", "streaming_s", "frames", "gaps_total", "model")}


def print_stream(stats: dict[str, Any], output_dir: Path, out: TextIO) -> None:
    """The human summary of a stream: unique objects, line crossings, frames, gaps."""
    if stats.get("model", {}).get("random_weights"):
        out.write("NOTE: random-weights model — these counts are not real detections\n")
    counts, frames = stats["counts"], stats["frames"]
    out.write(f"unique objects: {counts['total_unique']}\n")
    for name, number in counts["by_class"].items():
        out.write(f"  {name}: {number}\n")
    for name, line in counts["lines"].items():
        out.write(f"line {name}: in {line['in']} {_by_class(line['by_class']['in'])}, "
                  f"out {line['out']} {_by_class(line['by_class']['out'])}\n")
    out.write(f"streamed {stats['streaming_s']} s: {frames['processed']} frames counted, "
              f"{frames['dropped']} dropped, {stats['gaps_total']} gaps\n")
    out.write(f"results: {output_dir}\n")


def _by_class(counts: dict[str, int]) -> str:
    if not counts:
        return ""
    return "(" + ", ".join(f"{name} {number}" for name, number in counts.items()) + ")"


_RUNS: dict[str, Callable[[argparse.Namespace, Callable[[], bool]], dict[str, Any]]] = {
    "video": _run, "stills": _run_stills, "stream": _run_stream,
}
_PRINTERS: dict[str, tuple[Callable[[dict[str, Any]], dict[str, Any]], Callable[[dict[str, Any], Path, TextIO], None]]] = {
    "video": (_counts_document, print_counts), "stills": (_stills_counts, print_stills),
    "stream": (_stream_counts, print_stream),
}


if __name__ == "__main__":
    sys.exit(main())
