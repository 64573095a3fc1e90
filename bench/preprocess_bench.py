"""Preprocessing benchmark (figures, not pass/fail): `python bench/preprocess_bench.py`.

Times one frame's preprocessing two ways, for the image-processor settings of RT-DETRv2
(640x640 fixed resize) and DETR (shortest edge 800, longest 1333):

- `transformers`: the checkpoint's own image processor. Without torchvision, transformers
  uses its PIL processors: frame → PIL image → resize on one core → normalise in numpy.
- `ml_engine`: `ml_engine.preprocess.Preprocessor`, driven by the same processor settings,
  resizing uint8 frames with torch before converting the small result to float.

Prints milliseconds per frame (median of --repeats) for each frame size.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from transformers import DetrImageProcessorPil, RTDetrImageProcessorPil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ml_engine.preprocess import Preprocessor, spec_from_processor  # noqa: E402

PROCESSORS = {
    "RT-DETRv2 640x640": lambda: RTDetrImageProcessorPil(size={"height": 640, "width": 640}),
    "DETR 800/1333": lambda: DetrImageProcessorPil(size={"shortest_edge": 800, "longest_edge": 1333}),
}
FRAME_SIZES = {"720p": (720, 1280), "1080p": (1080, 1920), "4K": (2160, 3840)}


def median_ms(function, repeats: int) -> float:
    function()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU\n")
    print(f"{'processor':20s} {'frame':6s} {'transformers ms':>16s} {'ml_engine ms':>13s} {'speed-up':>9s}")
    for name, make_processor in PROCESSORS.items():
        processor = make_processor()
        ours = Preprocessor(spec_from_processor(processor), torch.device("cpu"))
        for label, (height, width) in FRAME_SIZES.items():
            frame = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            theirs_ms = median_ms(lambda p=processor, f=frame: p(images=[f], return_tensors="pt"), args.repeats)
            ours_ms = median_ms(lambda o=ours, f=frame: o([f]), args.repeats)
            print(f"{name:20s} {label:6s} {theirs_ms:16.1f} {ours_ms:13.1f} {theirs_ms / ours_ms:8.1f}x")


if __name__ == "__main__":
    main()
