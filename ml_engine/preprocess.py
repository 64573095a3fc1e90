"""Image preprocessing for DETR-family detectors, in torch.

Without torchvision, transformers falls back to PIL image processors that convert every
frame to a PIL image, resize it on one core and normalise it in numpy: at 1080p that costs
more than a tiny model's forward pass. This module does the same work with torch ops
(on the GPU when the model is there), driven by the checkpoint's own image-processor
settings, so the pixels the model sees match what the checkpoint's processor produces.

Order of work matters for speed: frames are resized first (on uint8 where torch has a
fast path), and only the small resized image is converted to float and normalised.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from core.errors import InvalidInput, ModelError

# PIL resample codes used in preprocessor_config.json -> torch interpolate modes.
_RESAMPLE_MODES = {0: "nearest", 2: "bilinear", 3: "bicubic"}


@dataclass(frozen=True)
class PreprocessSpec:
    """What a checkpoint's image processor does to a frame before the model sees it.

    ``resize_mode`` is one of ``"fixed"`` (height x width, aspect ratio not kept),
    ``"shortest_edge"`` (shortest edge to ``shortest_edge``, longest capped at
    ``longest_edge``; YOLOS also rounds both down to a multiple of ``size_multiple``) or
    ``"max_height_width"`` (fit inside ``height`` x ``width`` keeping the aspect ratio).
    """

    do_resize: bool
    resize_mode: str
    height: int | None
    width: int | None
    shortest_edge: int | None
    longest_edge: int | None
    interpolation: str
    do_rescale: bool
    rescale_factor: float
    do_normalize: bool
    image_mean: tuple[float, float, float]
    image_std: tuple[float, float, float]
    do_pad: bool
    size_multiple: int | None = None
    yolos_rounding: bool = False

    def describe_input_size(self) -> str:
        """A short human description of the model input size, for logs and stats."""
        if not self.do_resize:
            return "original frame size"
        if self.resize_mode in ("fixed", "max_height_width"):
            return f"{self.width}x{self.height}"
        return f"shortest edge {self.shortest_edge}, longest edge <= {self.longest_edge}"


def spec_from_processor(processor: Any, input_size: int | None = None) -> PreprocessSpec:
    """Read a transformers image processor's settings into a PreprocessSpec.

    ``input_size`` overrides the checkpoint's size: square ``input_size`` for fixed-size
    models (RT-DETR), shortest edge ``input_size`` (longest edge scaled in proportion)
    for aspect-keeping models (DETR, YOLOS).

    Raises ModelError when the processor's size settings are not ones this module knows.
    """
    size = _size_as_dict(getattr(processor, "size", None))
    resize_mode, height, width, shortest, longest = _resize_geometry(size)
    if input_size is not None:
        height, width, shortest, longest = _override_size(resize_mode, input_size, shortest, longest)
    is_yolos = type(processor).__name__.lower().startswith("yolos")
    resample = getattr(processor, "resample", 2)
    return PreprocessSpec(
        do_resize=bool(getattr(processor, "do_resize", True)),
        resize_mode=resize_mode,
        height=height,
        width=width,
        shortest_edge=shortest,
        longest_edge=longest,
        interpolation=_RESAMPLE_MODES.get(int(resample) if resample is not None else 2, "bilinear"),
        do_rescale=bool(getattr(processor, "do_rescale", True)),
        rescale_factor=float(getattr(processor, "rescale_factor", 1 / 255)),
        do_normalize=bool(getattr(processor, "do_normalize", False)),
        image_mean=_three(getattr(processor, "image_mean", (0.0, 0.0, 0.0))),
        image_std=_three(getattr(processor, "image_std", (1.0, 1.0, 1.0))),
        do_pad=bool(getattr(processor, "do_pad", False)),
        size_multiple=16 if is_yolos else None,
        yolos_rounding=is_yolos,
    )


def _size_as_dict(size: Any) -> dict[str, int]:
    if size is None:
        return {}
    items = size.items() if isinstance(size, dict) else vars(size).items()  # else: transformers' SizeDict
    return {key: int(value) for key, value in items if value is not None}


def _resize_geometry(size: dict[str, int]) -> tuple[str, int | None, int | None, int | None, int | None]:
    if "shortest_edge" in size:
        shortest = size["shortest_edge"]
        return "shortest_edge", None, None, shortest, size.get("longest_edge", shortest)
    if "max_height" in size and "max_width" in size:
        return "max_height_width", size["max_height"], size["max_width"], None, None
    if "height" in size and "width" in size:
        return "fixed", size["height"], size["width"], None, None
    raise ModelError(
        f"the checkpoint's preprocessor_config.json has a 'size' this service cannot use: {size}; "
        "expected height/width or shortest_edge/longest_edge"
    )


def _override_size(
    mode: str, input_size: int, shortest: int | None, longest: int | None
) -> tuple[int | None, int | None, int | None, int | None]:
    if mode == "shortest_edge":
        ratio = (longest or shortest or input_size) / (shortest or input_size)
        return None, None, input_size, max(input_size, round(input_size * ratio))
    return input_size, input_size, None, None


def _three(values: Any) -> tuple[float, float, float]:
    if isinstance(values, (int, float)):
        return (float(values),) * 3
    floats = tuple(float(v) for v in values)
    if len(floats) != 3:
        raise ModelError(f"the checkpoint's image processor has {len(floats)} mean/std values; expected 3 (RGB)")
    return floats


def resized_size(height: int, width: int, spec: PreprocessSpec) -> tuple[int, int]:
    """The (height, width) a frame of this size is resized to, exactly as transformers computes it."""
    if not spec.do_resize:
        return height, width
    if spec.resize_mode in ("fixed", "max_height_width"):
        # spec_from_processor always sets both for these two modes.
        assert spec.height is not None and spec.width is not None, f"{spec.resize_mode} resize without a height/width"
        if spec.resize_mode == "fixed":
            return spec.height, spec.width
        scale = min(spec.height / height, spec.width / width)
        return int(height * scale), int(width * scale)
    return _aspect_size(height, width, spec)


def _aspect_size(height: int, width: int, spec: PreprocessSpec) -> tuple[int, int]:
    """transformers' get_size_with_aspect_ratio (and YOLOS's variant), integer for integer."""
    size, max_size = spec.shortest_edge, spec.longest_edge
    # spec_from_processor always sets shortest_edge for the "shortest_edge" mode.
    assert size is not None, "shortest_edge resize without a shortest edge"
    raw_size: float | None = None
    if max_size is not None:
        short, long = float(min(height, width)), float(max(height, width))
        if long / short * size > max_size:
            raw_size = max_size * short / long
            size = int(round(raw_size))
    scale_from: float = raw_size if raw_size is not None else size
    already = (height <= width and height == size) or (width <= height and width == size)
    if spec.yolos_rounding and width < height:
        # YOLOS tests "portrait" before "already the right size"; keep its order.
        out_h, out_w = int(scale_from * height / width), size
    elif already:
        out_h, out_w = height, width
    elif width < height:
        out_h, out_w = int(scale_from * height / width), size
    else:
        out_h, out_w = size, int(scale_from * width / height)
    if spec.size_multiple:
        out_h -= out_h % spec.size_multiple
        out_w -= out_w % spec.size_multiple
    return out_h, out_w


class Preprocessor:
    """Turns RGB uint8 frames into the model's ``pixel_values`` (and ``pixel_mask``) with torch."""

    def __init__(self, spec: PreprocessSpec, device: torch.device) -> None:
        self.spec = spec
        self.device = device
        scale = spec.rescale_factor if spec.do_rescale else 1.0
        mean = torch.tensor(spec.image_mean if spec.do_normalize else (0.0, 0.0, 0.0))
        std = torch.tensor(spec.image_std if spec.do_normalize else (1.0, 1.0, 1.0))
        # rescale and normalise fused into one multiply-add: x * (scale / std) - mean / std
        self._multiplier = (scale / std).view(1, 3, 1, 1).to(device)
        self._offset = (-mean / std).view(1, 3, 1, 1).to(device)
        # torch resizes uint8 channels-last images with a fast antialiased kernel on CPU only.
        self._resize_uint8 = device.type == "cpu" and spec.interpolation == "bilinear"

    def __call__(self, images: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Preprocess a batch; returns ``(pixel_values, pixel_mask or None)`` on the device.

        ``pixel_values`` is float32, shape (B, 3, H, W). ``pixel_mask`` (B, H, W, int64,
        1 = real pixel) is returned when the processor pads the batch to a common size.
        """
        return self._batch([self._resize(_as_chw_tensor(image)) for image in images])

    def regions(
        self, images: list[np.ndarray], regions: list[tuple[int, tuple[int, int, int, int]]]
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Preprocess regions of frames (tiles) as one batch: ``regions`` holds (index into
        ``images``, (x0, y0, x1, y1) in that image's pixels). Each region is resized to the
        model's input exactly as a whole frame would be; each frame goes to the device once
        and its tiles are cut from it there (no copy on the CPU)."""
        frames: dict[int, torch.Tensor] = {}
        resized = []
        for index, (x0, y0, x1, y1) in regions:
            if index not in frames:
                frames[index] = self._on_device(_as_chw_tensor(images[index]))
            frame = frames[index]
            height, width = frame.shape[-2:]
            if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
                raise InvalidInput(f"region {(x0, y0, x1, y1)} is not inside the {width}x{height} image {index}")
            resized.append(self._resize(frame[:, :, y0:y1, x0:x1]))
        return self._batch(resized)

    def _on_device(self, image: torch.Tensor) -> torch.Tensor:
        """The uint8 frame where its tiles will be resized: the CPU for the fast uint8 path,
        else the model's device (one upload per frame, however many tiles)."""
        return image if self._resize_uint8 else image.to(self.device)

    def _batch(self, resized: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.spec.do_pad:
            return self._pad(resized)
        return torch.cat(resized), None

    def _resize(self, image: torch.Tensor) -> torch.Tensor:
        height, width = image.shape[-2:]
        out_h, out_w = resized_size(height, width, self.spec)
        if self._resize_uint8:
            small = _interpolate(image, (out_h, out_w), "bilinear") if (out_h, out_w) != (height, width) else image
            return self._normalise(small.to(self.device).float())
        pixels = image.to(self.device).float()
        if (out_h, out_w) != (height, width):
            # round to whole grey levels as the PIL reference processor does (it resizes uint8 images)
            pixels = _interpolate(pixels, (out_h, out_w), self.spec.interpolation).round_().clamp_(0, 255)
        return self._normalise(pixels)

    def _normalise(self, pixels: torch.Tensor) -> torch.Tensor:
        return pixels.mul_(self._multiplier).add_(self._offset)

    def _pad(self, images: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Pad bottom/right with zeros to the largest size in the batch, as DETR processors do."""
        max_h = max(image.shape[-2] for image in images)
        max_w = max(image.shape[-1] for image in images)
        batch = torch.zeros((len(images), 3, max_h, max_w), device=self.device)
        mask = torch.zeros((len(images), max_h, max_w), dtype=torch.int64, device=self.device)
        for index, image in enumerate(images):
            height, width = image.shape[-2:]
            batch[index, :, :height, :width] = image[0]
            mask[index, :height, :width] = 1
        return batch, mask


def _as_chw_tensor(image: np.ndarray) -> torch.Tensor:
    """A zero-copy (1, 3, H, W) channels-last view of an HxWx3 uint8 RGB frame."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        raise InvalidInput(f"expected an HxWx3 uint8 RGB image, got shape {shape} dtype {dtype}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise InvalidInput(f"image has no pixels (shape {image.shape})")
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).unsqueeze(0)


def _interpolate(image: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    if mode == "nearest":
        return F.interpolate(image, size=size, mode="nearest")
    # antialias=True matches PIL's (and torchvision's) behaviour when shrinking
    return F.interpolate(image, size=size, mode=mode, align_corners=False, antialias=True)
