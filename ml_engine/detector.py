"""The object detector: any DETR-family Hugging Face checkpoint behind one small class.

``Detector.load`` reads a checkpoint (a hub id or a local directory: DETR, Conditional /
Deformable DETR, RT-DETR, RT-DETRv2, YOLOS) once; ``detect`` runs batched inference on RGB
frames and returns one ``supervision.Detections`` per frame, boxes in that frame's pixels.

Preprocessing is done in torch (see ``preprocess.py``) from the checkpoint's own
processor settings; post-processing is the checkpoint's own
``image_processor.post_process_object_detection``, so boxes and scores mean exactly what
the model's authors intended.
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, cast

import numpy as np
import supervision as sv
import torch
from transformers import AutoConfig, AutoImageProcessor, AutoModelForObjectDetection, PretrainedConfig
from transformers.utils import logging as hf_logging

from core.errors import CattleCounterError, ConfigError, InvalidInput, ModelError
from ml_engine.preprocess import Preprocessor, PreprocessSpec, resized_size, spec_from_processor
from ml_engine.runtimes import Backend
from ml_engine.runtimes import select as runtime_select
from ml_engine.runtimes.torch_eager import TorchBackend
from ml_engine.tiling import View, offset_boxes

log = logging.getLogger(__name__)

# Set on the configs of checkpoints built by ml_engine.tiny_model: their boxes are noise.
RANDOM_INIT_MARKER = "cattlecounter_random_init"

# Hugging Face publishes timm-free revisions of the original DETR checkpoints under this name.
NO_TIMM_REVISION = "no_timm"

_HOW_TO_FIX = (
    "Set MODEL_ID (or --model) to a local checkpoint directory holding config.json, the weights and "
    "preprocessor_config.json, or to a Hugging Face hub id such as PekingU/rtdetr_v2_r18vd; hub ids "
    "need network access to huggingface.co or a cache filled beforehand (HF_HOME, with HF_HUB_OFFLINE=1 "
    "to use only the cache)."
)

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class Detector:
    """A loaded detection model. Build with ``Detector.load``; reuse it for every frame.

    Attributes:
        model_id: the hub id or directory it was loaded from.
        device: where it runs, e.g. ``"cpu"`` or ``"cuda:0"``.
        labels: class id -> class name, from the checkpoint's config.
        random_weights: True for the randomly initialised test checkpoints of
            ``ml_engine.tiny_model``; their detections are noise, never real objects.
        dtype: ``"float32"``, or the autocast dtype used on the GPU.
    """

    def __init__(
        self,
        model_id: str,
        model: torch.nn.Module,
        processor: Any,
        spec: PreprocessSpec,
        device: torch.device,
        autocast_dtype: torch.dtype | None,
    ) -> None:
        self.model_id = model_id
        self.device = str(device)
        config = _config_of(model)
        # transformers fills id2label whenever the checkpoint declares its classes (_load_model checks)
        assert config.id2label is not None, f"model {model_id} has no class labels (id2label)"
        self.labels: dict[int, str] = {int(k): str(v) for k, v in config.id2label.items()}
        self.random_weights = bool(getattr(config, RANDOM_INIT_MARKER, False))
        self.dtype = _dtype_name(autocast_dtype)
        self.spec = spec
        self._model = model
        self._processor = processor
        self._torch_device = device
        self._autocast_dtype = autocast_dtype
        self._preprocess = Preprocessor(spec, device)
        self._passes_pixel_mask = spec.do_pad and "pixel_mask" in inspect.signature(model.forward).parameters
        self._ids_by_name = _ids_by_lower_name(self.labels)
        # what runs the model: torch eager unless RUNTIME chose another (ml_engine/runtimes)
        precision = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}[self.dtype]
        self._backend: Backend = TorchBackend(model, self._autocast, precision)
        self._runtime_choice: runtime_select.Choice | None = None

    # --- loading ---------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        model_id: str,
        device: str = "auto",
        input_size: int | None = None,
        dtype: str = "auto",
        runtime: str = "torch",
        precision: str = "fp32",
        runtime_cache: Path | None = None,
    ) -> Detector:
        """Load a DETR-family object-detection checkpoint.

        Parameters:
            model_id: a local checkpoint directory, or a hub id (``org/name``, optionally
                ``org/name@revision``).
            device: ``"auto"`` (CUDA when present, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
            input_size: override the checkpoint's input size (square side for RT-DETR,
                shortest edge for DETR/YOLOS); None keeps the checkpoint's own.
            dtype: ``"auto"`` (bf16/fp16 autocast on CUDA, float32 on CPU), ``"float32"``,
                ``"float16"`` or ``"bfloat16"``.
            runtime: ``"torch"``, ``"onnxruntime"``, ``"openvino"`` or ``"auto"`` (see
                ``ml_engine.runtimes``); a runtime unfaithful to torch is refused and torch kept.
            precision: ``"fp32"``, ``"bf16"`` or ``"int8"`` (RUNTIME_PRECISION).
            runtime_cache: where ONNX exports are cached (default: under HF_HOME).

        Raises:
            ModelError: the checkpoint cannot be found, read or run (the message says what to set).
            ConfigError: ``device``, ``dtype`` or ``input_size`` is invalid or unavailable.
        """
        runtime, precision = runtime_select.validate(runtime, precision)
        from ml_engine import onnx_models  # it builds on this module

        onnx_model = onnx_models.locate(model_id)
        if onnx_model is not None:  # an exported YOLO / RT-DETR: ONNX Runtime, whatever RUNTIME says
            return onnx_models.OnnxDetector.open(model_id, onnx_model, input_size)
        torch_device = resolve_device(device)
        autocast_dtype = resolve_dtype(dtype, torch_device)
        if input_size is not None and not 32 <= input_size <= 4096:
            raise ConfigError(f"INPUT_SIZE must be between 32 and 4096 pixels, got {input_size}")
        source, revision = _resolve_source(model_id)
        with quiet_transformers():
            config, revision = _load_config(model_id, source, revision)
            if input_size is not None:
                _forget_fixed_input_size(config)
            model = _load_model(model_id, source, revision, config)
            processor = _load_processor(model_id, source, revision)
        spec = spec_from_processor(processor, input_size)
        try:
            model.to(torch_device)
        except (RuntimeError, torch.OutOfMemoryError) as exc:
            raise ModelError(f"could not move model {model_id} to {torch_device}: {exc}") from exc
        detector = cls(model_id, model, processor, spec, torch_device, autocast_dtype)
        if runtime != "torch":
            detector.use_runtime(runtime_select.choose(detector, runtime, precision, runtime_cache))
        log.info(
            "loaded model %s on %s (%s, %s, input %s%s)",
            model_id,
            detector.device,
            detector.dtype,
            detector.backend.name,
            spec.describe_input_size(),
            ", RANDOM WEIGHTS" if detector.random_weights else "",
        )
        return detector

    # --- inference ----------------------------------------------------------------------

    def detect(
        self, images: list[np.ndarray], threshold: float, class_names: Iterable[str] | None = None
    ) -> list[sv.Detections]:
        """Detect objects in a batch of frames.

        Parameters:
            images: HxWx3 uint8 RGB frames (sizes may differ).
            threshold: keep detections whose score is above this (0..1, checked by ``DetectionConfig``).
            class_names: keep only these classes (label names, case-insensitive); None or an
                empty collection keeps all (as an empty CLASSES setting does).

        Returns:
            One ``sv.Detections`` per image: ``xyxy`` float32 in that image's pixels (clipped
            to the image), ``confidence``, ``class_id`` and ``data["class_name"]``.

        Raises:
            InvalidInput: an unknown class name, or an image that is not HxWx3 uint8.
            ModelError: the model failed to run (e.g. out of GPU memory).
        """
        wanted = self.class_ids(class_names) if class_names else None
        if not images:
            return []
        results = self._infer(self.prepare(images), [image.shape[:2] for image in images], threshold)
        return [self._to_detections(result, image.shape, wanted) for result, image in zip(results, images, strict=True)]

    def detect_views(
        self, images: list[np.ndarray], views: list[View], threshold: float, class_names: Iterable[str] | None = None
    ) -> list[sv.Detections]:
        """Detect objects in regions (tiles) of frames, all in one batched forward pass.

        Each view's region is cut from its frame and resized to the model's input as a
        whole frame would be. Returns one ``sv.Detections`` per view, boxes in *frame*
        pixels (clipped to the view's region). The caller bounds how many views one call
        gets (``ml_engine.pipeline`` keeps it within ``tile_batch_size``).

        Raises: as ``detect``; InvalidInput when a region is not inside its frame.
        """
        wanted = self.class_ids(class_names) if class_names else None
        if not views:
            return []
        inputs = self.prepare_views(images, views)
        sizes = [(view.region[3] - view.region[1], view.region[2] - view.region[0]) for view in views]
        results = self._infer(inputs, sizes, threshold)
        return [
            offset_boxes(self._to_detections(result, size, wanted), view.region)
            for result, size, view in zip(results, sizes, views, strict=True)
        ]

    def model_input_size(self, width: int, height: int) -> tuple[int, int] | None:
        """The (width, height) a ``width`` x ``height`` frame is resized to for the model;
        None when the checkpoint does not resize (it sees frames at full resolution)."""
        if not self.spec.do_resize:
            return None
        out_h, out_w = resized_size(height, width, self.spec)
        return out_w, out_h

    def tile_size(self) -> tuple[int, int] | None:
        """The tile (width, height) that the model sees at full resolution: its input size
        (fixed-size models), or a square of its shortest edge (DETR, YOLOS)."""
        if not self.spec.do_resize:
            return None
        if self.spec.resize_mode in ("fixed", "max_height_width"):
            return self.spec.width, self.spec.height  # type: ignore[return-value]
        return self.spec.shortest_edge, self.spec.shortest_edge  # type: ignore[return-value]

    @torch.inference_mode()
    def prepare(self, images: list[np.ndarray]) -> dict[str, torch.Tensor]:
        """The model inputs for a batch of frames (``pixel_values``, and ``pixel_mask`` when the
        checkpoint pads), on the model's device. Split out of ``detect`` for benchmarks."""
        return self._inputs(*self._preprocess(images))

    @torch.inference_mode()
    def prepare_views(self, images: list[np.ndarray], views: list[View]) -> dict[str, torch.Tensor]:
        """The model inputs for regions of frames (see ``detect_views``)."""
        pixel_values, pixel_mask = self._preprocess.regions(images, [(view.image, view.region) for view in views])
        return self._inputs(pixel_values, pixel_mask)

    def _inputs(self, pixel_values: torch.Tensor, pixel_mask: torch.Tensor | None) -> dict[str, torch.Tensor]:
        inputs = {"pixel_values": pixel_values}
        if self._passes_pixel_mask and pixel_mask is not None:
            inputs["pixel_mask"] = pixel_mask
        return inputs

    @torch.inference_mode()
    def forward(self, inputs: dict[str, torch.Tensor]) -> Any:
        """Run the model (with autocast where configured) on inputs from ``prepare``; raw outputs.

        Raises ModelError when the device runs out of memory or the model fails to run.
        """
        try:
            return self._backend(inputs)
        except torch.OutOfMemoryError as exc:
            batch = len(inputs["pixel_values"])
            raise ModelError(
                f"out of memory running {self.model_id} on {self.device} with a batch of {batch}; "
                "lower BATCH_SIZE or INPUT_SIZE"
            ) from exc
        except Exception as exc:  # torch/transformers raise RuntimeError, IndexError, ValueError, ...
            raise self._failed(f"failed to run on {self.device}", exc) from exc

    @torch.inference_mode()
    def _infer(
        self, inputs: dict[str, torch.Tensor], sizes: list[tuple[int, int]], threshold: float
    ) -> list[dict[str, torch.Tensor]]:
        """Forward pass and post-processing; ``sizes``: each input's (height, width) in source pixels."""
        outputs = self.forward(inputs)
        try:
            # post-processing in float32 whatever the autocast dtype was
            outputs["logits"] = outputs.logits.float()
            outputs["pred_boxes"] = outputs.pred_boxes.float()
            target_sizes = torch.tensor(sizes, device=outputs.logits.device)
            return self._processor.post_process_object_detection(
                outputs, threshold=threshold, target_sizes=target_sizes
            )
        except Exception as exc:
            raise self._failed("ran, but its output could not be post-processed", exc) from exc

    # --- runtime (ml_engine/runtimes) --------------------------------------------------------

    @property
    def backend(self) -> Backend:
        """What runs the model's forward pass (torch eager unless RUNTIME chose another)."""
        return self._backend

    def backend_model(self) -> torch.nn.Module:
        """The transformers model, for runtimes that export it."""
        return self._model

    def use_runtime(self, choice: runtime_select.Choice) -> None:
        """Run on the backend ``choice`` holds from now on (``runtimes.select.choose``)."""
        self._runtime_choice = choice
        self._backend = choice.backend

    @contextlib.contextmanager
    def running_on(self, backend: Backend) -> Iterator[None]:
        """Run on ``backend`` for a while (the faithfulness check); not for use while jobs run."""
        previous, self._backend = self._backend, backend
        try:
            yield
        finally:
            self._backend = previous

    def _failed(self, what_happened: str, exc: Exception) -> ModelError:
        """A typed error for a model that loaded but does not run: almost always a checkpoint
        whose config.json does not match its weights, or an INPUT_SIZE it cannot take."""
        reason = " ".join(str(exc).split())[:300] or type(exc).__name__
        return ModelError(
            f"model {self.model_id} {what_happened} ({type(exc).__name__}: {reason}). "
            "Check that the checkpoint's config.json matches its weights (both saved together by "
            "save_pretrained), that it is a DETR-family object detector, and that INPUT_SIZE (if set) "
            "suits it"
        )

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self._autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self._torch_device.type, dtype=self._autocast_dtype)

    def _to_detections(
        self, result: dict[str, torch.Tensor], shape: tuple[int, ...], wanted: set[int] | None
    ) -> sv.Detections:
        height, width = shape[:2]
        xyxy = result["boxes"].detach().cpu().numpy().astype(np.float32).reshape(-1, 4)
        np.clip(xyxy[:, 0::2], 0, width, out=xyxy[:, 0::2])
        np.clip(xyxy[:, 1::2], 0, height, out=xyxy[:, 1::2])
        class_id = result["labels"].detach().cpu().numpy().astype(np.int64)
        confidence = result["scores"].detach().cpu().numpy().astype(np.float32)
        keep = best_label_per_box(xyxy, confidence)
        xyxy, class_id, confidence = xyxy[keep], class_id[keep], confidence[keep]
        if wanted is not None:
            keep = np.isin(class_id, list(wanted))
            xyxy, class_id, confidence = xyxy[keep], class_id[keep], confidence[keep]
        names = np.array([self.labels.get(int(c), str(int(c))) for c in class_id], dtype=str)
        return sv.Detections(xyxy=xyxy, confidence=confidence, class_id=class_id, data={"class_name": names})

    # --- classes and description ---------------------------------------------------------

    def class_ids(self, class_names: Iterable[str]) -> set[int]:
        """The class ids for these label names (case-insensitive).

        Raises InvalidInput naming the valid labels when a name is not one of the model's.
        """
        if isinstance(class_names, str):  # one name, not an iterable of letters
            class_names = [class_names]
        ids: set[int] = set()
        unknown = []
        for name in class_names:
            found = self._ids_by_name.get(name.strip().lower())
            if found is None:
                unknown.append(name)
            else:
                ids |= found
        if unknown:
            raise InvalidInput(
                f"unknown class name(s) {', '.join(repr(n) for n in unknown)} for model {self.model_id}; "
                f"valid names: {', '.join(self.label_names())}"
            )
        return ids

    def label_names(self) -> list[str]:
        """The model's distinct class names, in class-id order (COCO's "N/A" gaps left out)."""
        seen: dict[str, None] = {}
        for _, name in sorted(self.labels.items()):
            if name.upper() != "N/A":
                seen.setdefault(name, None)
        return list(seen)

    def describe(self) -> dict[str, Any]:
        """The model facts stats.json records: id, device, dtype, input size, random weights."""
        info: dict[str, Any] = {
            "id": self.model_id,
            "architecture": _config_of(self._model).model_type,
            "device": self.device,
            "dtype": self.dtype,
            "input_size": self.spec.describe_input_size(),
            "random_weights": self.random_weights,
        }
        info.update(self._runtime_choice.describe() if self._runtime_choice else self._backend.describe())
        if self.random_weights:
            info["note"] = "model: random weights — not real detections"
        return info

    def __repr__(self) -> str:
        random = ", random weights" if self.random_weights else ""
        return f"Detector({self.model_id!r}, device={self.device!r}, dtype={self.dtype!r}{random})"


def best_label_per_box(xyxy: np.ndarray, confidence: np.ndarray) -> np.ndarray:
    """Indices (in order) of the detections to keep: one per distinct box, its best score.

    RT-DETR's post-processing takes the top k over every (query, class) pair, so one query,
    one object, can come back twice with the very same box and two labels (cow 0.80, sheep
    0.57). Both would start tracks and the animal would be counted twice; keep its best label.
    """
    if len(xyxy) < 2:
        return np.arange(len(xyxy))
    by_score = np.argsort(-confidence, kind="stable")
    _, first = np.unique(xyxy[by_score], axis=0, return_index=True)  # first = best-scoring copy
    return np.sort(by_score[first])


# --- device and dtype ------------------------------------------------------------------


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> first CUDA GPU if present else CPU; validates explicit choices.

    Raises ConfigError when the device is malformed or not available here.
    """
    wanted = (device or "auto").strip().lower()
    if wanted == "auto":
        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    try:
        parsed = torch.device(wanted)
    except RuntimeError:
        raise ConfigError(f"DEVICE must be auto, cpu, cuda or cuda:N, got {device!r}") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"DEVICE={device} but no CUDA GPU is available here; use DEVICE=auto or cpu")
        index = parsed.index if parsed.index is not None else torch.cuda.current_device()
        if index >= torch.cuda.device_count():
            raise ConfigError(f"DEVICE={device} but only {torch.cuda.device_count()} CUDA GPU(s) are visible")
        return torch.device("cuda", index)
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"DEVICE={device} but MPS is not available here; use DEVICE=auto or cpu")
    if parsed.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"DEVICE must be auto, cpu, cuda or cuda:N, got {device!r}")
    return parsed


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype to run with, or None for plain float32.

    ``"auto"`` picks bfloat16 on GPUs that support it, float16 on other GPUs, float32 on CPU.
    """
    wanted = (dtype or "auto").strip().lower()
    if wanted == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if wanted not in _DTYPES:
        raise ConfigError(f"dtype must be auto, float32, float16 or bfloat16, got {dtype!r}")
    return None if wanted == "float32" else _DTYPES[wanted]


def _dtype_name(autocast_dtype: torch.dtype | None) -> str:
    if autocast_dtype is None:
        return "float32"
    return {v: k for k, v in _DTYPES.items()}[autocast_dtype]


# --- loading helpers -------------------------------------------------------------------


def _resolve_source(model_id: str) -> tuple[str, str | None]:
    """(directory or hub id, revision) for a model id; rejects a local path that is not there."""
    text = (model_id or "").strip()
    if not text:
        raise ModelError("no model given. " + _HOW_TO_FIX)
    path = Path(text).expanduser()
    if path.is_dir():
        return str(path), None
    if path.exists():
        raise ModelError(f"model path {text!r} is a file, neither a checkpoint directory nor an .onnx file "
                         "(a .pt file must be exported to ONNX first: docs/models.md). " + _HOW_TO_FIX)
    if text.startswith(("/", "./", "../", "~", "\\")) or text.count("/") > 1:
        raise ModelError(f"model directory {text!r} does not exist. " + _HOW_TO_FIX)
    repo, _, revision = text.partition("@")
    return repo, revision or None


def _load_config(model_id: str, source: str, revision: str | None) -> tuple[Any, str | None]:
    """The checkpoint's config; for timm-backbone DETRs without timm, the no_timm revision's."""
    config = _call_loader(model_id, AutoConfig.from_pretrained, source, revision=revision)
    if not _needs_timm(config) or _timm_installed():
        return config, revision
    if revision is None and not Path(source).is_dir():
        log.info("%s uses a timm backbone and timm is not installed; trying revision %r", model_id, NO_TIMM_REVISION)
        with contextlib.suppress(ModelError):
            fallback = _call_loader(model_id, AutoConfig.from_pretrained, source, revision=NO_TIMM_REVISION)
            if not _needs_timm(fallback):
                return fallback, NO_TIMM_REVISION
    raise ModelError(
        f"model {model_id} uses a timm backbone and the timm library is not installed here. Use a "
        "checkpoint with a transformers-native backbone (for the original DETRs, the hub revision "
        f"'{NO_TIMM_REVISION}', e.g. MODEL_ID=facebook/detr-resnet-50@{NO_TIMM_REVISION}) or an RT-DETR "
        "checkpoint such as PekingU/rtdetr_v2_r18vd."
    )


def _needs_timm(config: Any) -> bool:
    backbone = getattr(config, "backbone_config", None)
    if isinstance(backbone, dict):
        backbone_type = backbone.get("model_type")
    else:
        backbone_type = getattr(backbone, "model_type", None)
    return backbone_type == "timm_backbone" or bool(getattr(config, "use_timm_backbone", False))


def _timm_installed() -> bool:
    return importlib.util.find_spec("timm") is not None


def _forget_fixed_input_size(config: Any) -> None:
    """RT-DETR configs may precompute anchors / position embeddings for one input size;
    with an input-size override they must be generated for the actual size instead."""
    for name in ("anchor_image_size", "eval_size"):
        if getattr(config, name, None) is not None:
            setattr(config, name, None)


def _load_model(model_id: str, source: str, revision: str | None, config: Any) -> torch.nn.Module:
    model = _call_loader(model_id, AutoModelForObjectDetection.from_pretrained, source, revision=revision, config=config)
    if not getattr(model.config, "id2label", None):  # PretrainedConfig always has the attribute (None when unset)
        raise ModelError(f"model {model_id} has no class labels (id2label) in its config. " + _HOW_TO_FIX)
    return model.eval()


def _config_of(model: torch.nn.Module) -> PretrainedConfig:
    """A transformers model's config. nn.Module types unknown attributes as Tensor | Module;
    every model from_pretrained loads carries a PretrainedConfig."""
    return cast(PretrainedConfig, model.config)


def _load_processor(model_id: str, source: str, revision: str | None) -> Any:
    processor = _call_loader(model_id, AutoImageProcessor.from_pretrained, source, revision=revision)
    if not hasattr(processor, "post_process_object_detection"):
        raise ModelError(
            f"model {model_id}'s image processor ({type(processor).__name__}) cannot post-process object "
            "detections; it is not a DETR-family detector. " + _HOW_TO_FIX
        )
    return processor


def _call_loader(model_id: str, loader: Any, source: str, **kwargs: Any) -> Any:
    """Run a transformers ``from_pretrained``, turning whatever it raises into ModelError."""
    kwargs = {key: value for key, value in kwargs.items() if value is not None}
    try:
        return loader(source, **kwargs)
    except CattleCounterError:
        raise
    except Exception as exc:  # transformers/huggingface_hub raise OSError, ValueError, KeyError, ...
        reason = " ".join(str(exc).split())[:400].rstrip(".") or type(exc).__name__
        raise ModelError(f"could not load model {model_id}: {reason}. {_HOW_TO_FIX}") from exc


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Hide transformers' weight-loading progress bars (the CLI draws its own)."""
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


# --- small checks ------------------------------------------------------------------------


def _ids_by_lower_name(labels: dict[int, str]) -> dict[str, set[int]]:
    ids: dict[str, set[int]] = {}
    for class_id, name in labels.items():
        ids.setdefault(name.lower(), set()).add(class_id)
    return ids
