"""Randomly initialised DETR-family checkpoints for tests, demos and benchmarks.

The Hugging Face Hub is not always reachable (CI, air-gapped sites), so tests never
download weights: they build a checkpoint here with ``save_pretrained`` and load it through
the same ``Detector.load`` path users take. ``size="tiny"`` checkpoints are a couple of MB
and run in milliseconds per frame on a CPU; ``size="real"`` builds the full-size
architecture (RT-DETRv2-R18, DETR-R50) for throughput measurements without a download.

Their boxes are noise. The config carries ``cattlecounter_random_init = True`` so the
Detector reports ``random_weights`` and stats/CLI can say so.

Real-size RT-DETR checkpoints get one more step (``separate_scores``): with transformers'
default init their batch-norm weights are about 0.01, the encoder's output shrinks to about
1e-9 through the layers, and all 8,400 encoder scores come out equal. Which queries a runtime
keeps then depends on how it breaks ties, so no comparison between runtimes means anything.

    python -m ml_engine.tiny_model OUTDIR [--arch rt_detr_v2|rt_detr|detr] [--size tiny|real]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForObjectDetection,
    ConditionalDetrConfig,
    ConditionalDetrImageProcessorPil,
    DeformableDetrConfig,
    DeformableDetrImageProcessorPil,
    DetrConfig,
    DetrImageProcessorPil,
    ResNetConfig,
    RTDetrConfig,
    RTDetrImageProcessorPil,
    RTDetrV2Config,
    YolosConfig,
    YolosImageProcessorPil,
)

from ml_engine.detector import RANDOM_INIT_MARKER, quiet_transformers

ARCHITECTURES = ("rt_detr_v2", "rt_detr", "detr", "conditional_detr", "deformable_detr", "yolos")
# the other DETR-family members Detector supports; tiny only (they exist to test loading paths)
_TINY_ONLY = ("conditional_detr", "deformable_detr", "yolos")
SIZES = ("tiny", "real")
DEFAULT_LABELS = ("cow", "sheep", "horse", "person")

TINY_INPUT = 320  # RT-DETR input side / DETR shortest edge for tiny checkpoints


def build_tiny_checkpoint(
    directory: str | Path,
    arch: str = "rt_detr_v2",
    labels: Sequence[str] = DEFAULT_LABELS,
    size: str = "tiny",
    seed: int = 0,
    separated: bool | None = None,
) -> Path:
    """Save a randomly initialised object-detection checkpoint into ``directory``.

    Parameters:
        directory: where config.json, model.safetensors and preprocessor_config.json go
            (created if missing).
        arch: ``"rt_detr_v2"``, ``"rt_detr"`` or ``"detr"`` (DETR with a transformers-native
            ResNet backbone: timm is not needed); also ``"conditional_detr"``,
            ``"deformable_detr"`` and ``"yolos"`` (tiny only), to exercise the other families.
        labels: class names, in class-id order.
        size: ``"tiny"`` (small widths, 30 queries, 320 px input) or ``"real"`` (the published
            architecture's size: RT-DETR(v2)-R18 at 640x640, DETR-R50 at 800/1333).
        seed: the random init is seeded, so the same arguments give the same weights.
        separated: give the RT-DETR model separated scores (``separate_scores``); None: for
            real-size ones only (tiny ones keep the init that many tests' expectations rest on).

    Returns the directory.
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"arch must be one of {', '.join(ARCHITECTURES)}, got {arch!r}")
    if size not in SIZES:
        raise ValueError(f"size must be one of {', '.join(SIZES)}, got {size!r}")
    if size == "real" and arch in _TINY_ONLY:
        raise ValueError(f"size='real' is available for rt_detr_v2, rt_detr and detr, not {arch}")
    if not labels:
        raise ValueError("a checkpoint needs at least one label")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = _config(arch, size, list(labels))
    setattr(config, RANDOM_INIT_MARKER, True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForObjectDetection.from_config(config)
        if (size == "real" if separated is None else separated) and arch in ("rt_detr_v2", "rt_detr"):
            separate_scores(model, calibration_images(640 if size == "real" else TINY_INPUT))
    with quiet_transformers():
        model.eval().save_pretrained(directory)
        image_processor(arch, size).save_pretrained(directory)
    return directory


def separate_scores(model: torch.nn.Module, images: torch.Tensor, head_noise: float = 0.01) -> None:
    """Give a randomly initialised model the score spread a trained one has, in place.

    Batch-norm layers get weight 1 and bias 0 and their running statistics are measured on
    ``images`` (so every layer passes on activations of unit scale instead of shrinking them),
    and weights left at exactly zero (RT-DETR's box-refinement heads and deformable-attention
    offsets) get small noise so that each query refines its box differently.

    Parameters:
        model: a freshly built model (left in eval mode).
        images: a float batch (N, 3, H, W) in the model's normalised input space, N >= 2.
        head_noise: the standard deviation of the noise given to all-zero weights.
    """
    norms = [module for module in model.modules() if isinstance(module, torch.nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        for norm in norms:
            norm.weight.fill_(1.0)
            norm.bias.zero_()
            norm.reset_running_stats()
            norm.momentum = None  # a plain average over the calibration batch
        for parameter in model.parameters():
            if parameter.dim() >= 2 and not parameter.any():
                parameter.normal_(0.0, head_noise)
        model.eval()
        for norm in norms:
            norm.train()  # only the norms: RT-DETR's training mode wants labels for denoising
        model(pixel_values=images)
    model.eval()


def calibration_images(side: int) -> torch.Tensor:
    """Two deterministic synthetic images (noise, and smooth gradients with a bright disc),
    ``side`` pixels square, scaled to 0..1 as RT-DETR's processor scales them."""
    generator = torch.Generator().manual_seed(0)
    noise = torch.rand(3, side, side, generator=generator)
    ys, xs = torch.meshgrid(torch.linspace(0, 1, side), torch.linspace(0, 1, side), indexing="ij")
    disc = (((xs - 0.6) ** 2 + (ys - 0.4) ** 2) < 0.04).float()
    structured = torch.stack([xs, ys, torch.clamp(xs * ys + disc, 0, 1)])
    return torch.stack([noise, structured])


def _config(arch: str, size: str, labels: list[str]) -> Any:
    id2label = dict(enumerate(labels))
    label2id = {name: index for index, name in id2label.items()}
    common: dict[str, Any] = {"id2label": id2label, "label2id": label2id}
    if arch == "detr":
        return DetrConfig(**common, **_detr_dims(size))
    if arch in ("conditional_detr", "deformable_detr"):
        return _other_detr_config(arch, common)
    if arch == "yolos":
        return _yolos_config(common)
    config_class = RTDetrV2Config if arch == "rt_detr_v2" else RTDetrConfig
    return config_class(**common, **_rt_detr_dims(size))


def _rt_detr_dims(size: str) -> dict[str, Any]:
    if size == "real":  # the published rtdetr(_v2)_r18vd architecture
        backbone = ResNetConfig(hidden_sizes=[64, 128, 256, 512], depths=[2, 2, 2, 2], layer_type="basic")
        return {
            "backbone_config": _rt_detr_backbone(backbone),
            "encoder_in_channels": [128, 256, 512],
            "hidden_expansion": 0.5,
            "decoder_layers": 3,
        }
    backbone = ResNetConfig(embedding_size=16, hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 1, 1], layer_type="basic")
    return {
        "backbone_config": _rt_detr_backbone(backbone),
        "encoder_in_channels": [32, 64, 128],
        "encoder_hidden_dim": 32,
        "encoder_ffn_dim": 64,
        "encoder_attention_heads": 2,
        "hidden_expansion": 0.5,
        "d_model": 32,
        "decoder_in_channels": [32, 32, 32],
        "decoder_ffn_dim": 64,
        "decoder_layers": 2,  # transformers ties box heads across layers: it needs at least two
        "decoder_attention_heads": 2,
        "num_queries": 30,
        "num_denoising": 0,
        # a wider random init than the default makes which boxes win depend on the image,
        # so tests comparing preprocessing paths can tell a wrong pixel from a right one
        "initializer_range": 0.05,
    }


def _rt_detr_backbone(resnet: ResNetConfig) -> dict[str, Any]:
    """RT-DETR uses its own ResNet-vd backbone type with the same width/depth knobs."""
    return {
        "model_type": "rt_detr_resnet",
        "embedding_size": resnet.embedding_size,
        "hidden_sizes": list(resnet.hidden_sizes or ()),
        "depths": list(resnet.depths or ()),
        "layer_type": resnet.layer_type,
        "out_indices": [2, 3, 4],
    }


def _detr_dims(size: str) -> dict[str, Any]:
    if size == "real":  # facebook/detr-resnet-50, with transformers' own ResNet-50
        backbone = ResNetConfig(out_features=["stage4"])  # type: ignore[call-arg]  # a __post_init__ keyword
        return {"backbone_config": backbone, "use_timm_backbone": False}
    backbone = ResNetConfig(  # type: ignore[call-arg]  # a __post_init__ keyword
        embedding_size=16, hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 1, 1], layer_type="basic", out_features=["stage4"]
    )
    return {
        "backbone_config": backbone,
        "use_timm_backbone": False,
        "d_model": 32,
        "encoder_layers": 1,
        "decoder_layers": 1,
        "encoder_ffn_dim": 64,
        "decoder_ffn_dim": 64,
        "encoder_attention_heads": 2,
        "decoder_attention_heads": 2,
        "num_queries": 30,
        # with the default init (0.02) every query predicts the same box whatever the image;
        # at 0.2 boxes move with the image content but stay stable under 1-grey-level noise
        "init_std": 0.2,
    }


def _other_detr_config(arch: str, common: dict[str, Any]) -> Any:
    deformable = arch == "deformable_detr"
    backbone = ResNetConfig(  # type: ignore[call-arg]  # a __post_init__ keyword
        embedding_size=16,
        hidden_sizes=[16, 32, 64, 128],
        depths=[1, 1, 1, 1],
        layer_type="basic",
        out_features=["stage2", "stage3", "stage4"] if deformable else ["stage4"],
    )
    config_class = DeformableDetrConfig if deformable else ConditionalDetrConfig
    return config_class(  # type: ignore[call-arg]  # a __post_init__ keyword
        **common,
        backbone_config=backbone,
        use_timm_backbone=False,
        d_model=32,
        encoder_layers=1,
        decoder_layers=2 if deformable else 1,  # deformable ties box heads across layers
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        num_queries=30,
        init_std=0.2,
    )


def _yolos_config(common: dict[str, Any]) -> Any:
    return YolosConfig(
        **common,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=[TINY_INPUT, TINY_INPUT],
        patch_size=16,
        num_detection_tokens=10,
        initializer_range=0.2,
    )


_ASPECT_PROCESSORS = {
    "detr": DetrImageProcessorPil,
    "conditional_detr": ConditionalDetrImageProcessorPil,
    "deformable_detr": DeformableDetrImageProcessorPil,
    "yolos": YolosImageProcessorPil,
}


def image_processor(arch: str, size: str) -> Any:
    """The image processor a checkpoint of ``arch`` at ``size`` (``tiny`` or ``real``) is saved with: the
    resizing and normalisation the published model of that architecture uses."""
    if arch in _ASPECT_PROCESSORS:
        shortest, longest = (800, 1333) if size == "real" else (TINY_INPUT, 533)
        return _ASPECT_PROCESSORS[arch](size={"shortest_edge": shortest, "longest_edge": longest})
    side = 640 if size == "real" else TINY_INPUT
    return RTDetrImageProcessorPil(size={"height": side, "width": side})


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ml_engine.tiny_model OUTDIR``: build a random checkpoint and print its path."""
    parser = argparse.ArgumentParser(
        prog="python -m ml_engine.tiny_model",
        description="Build a randomly initialised detection checkpoint (for tests and demos; boxes are noise).",
    )
    parser.add_argument("outdir", type=Path, help="directory to write the checkpoint into")
    parser.add_argument("--arch", choices=ARCHITECTURES, default="rt_detr_v2")
    parser.add_argument("--size", choices=SIZES, default="tiny", help="tiny (fast) or real (published model size)")
    parser.add_argument("--labels", default=",".join(DEFAULT_LABELS), help="comma-separated class names")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    labels = [name.strip() for name in args.labels.split(",") if name.strip()]
    if not labels:
        parser.error("--labels needs at least one class name")
    path = build_tiny_checkpoint(args.outdir, arch=args.arch, labels=labels, size=args.size, seed=args.seed)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
