"""Frozen CNN → PatchCore patch embeddings.

Each chosen stage is averaged over its 3×3 neighbourhood (so a patch sees a
little context), brought to the finest stage's grid, and concatenated; an
optional seeded projection reduces the dimension. ``aggregation="paper"``
reproduces the published PatchCoreCL code instead: 3×3 average pooling with no
padding, then adaptive average pooling back to the finest grid.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from .backbones import DEFAULT_BACKBONE, create_backbone, get_spec
from .preprocess import Preprocessing

AGGREGATIONS = ("same", "paper")
REDUCTIONS = ("none", "random_projection", "adaptive_avg")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
AMP_TOLERANCE = 0.01  # relative L2 error of embeddings under which mixed precision is accepted


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def cpu_supports_bf16() -> bool:
    """True where the CPU has native bf16 matrix units (AVX512-BF16 / AMX)."""
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


@dataclass
class FeatureExtractor:
    """Turns a batch of preprocessed images into patch features ``(B, H·W, D)``.

    Deterministic: eval mode, no dropout, fixed seeds for the projection. Runs
    on CUDA when present (``device="auto"``), channels_last, under
    ``torch.inference_mode``. ``precision="auto"`` uses bf16/fp16 only if a
    check on a fixed input keeps embeddings within ``AMP_TOLERANCE`` of fp32.
    """

    backbone: str = DEFAULT_BACKBONE
    out_indices: tuple[int, ...] | None = None
    weights: str | None = None
    aggregation: str = "same"
    target_dim: int | None = None
    reduction: str = "none"
    device: str = "auto"
    precision: str = "auto"
    batch_size: int = 16
    seed: int = 0
    allow_download: bool = True
    weights_sha256: str = field(init=False, default="")
    dtype_used: str = field(init=False, default="fp32")

    def __post_init__(self):
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}")
        if self.reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}")
        spec = get_spec(self.backbone)
        if self.out_indices is None:
            self.out_indices = spec.out_indices
        self.out_indices = tuple(int(i) for i in self.out_indices)
        spec = type(spec)(**{**spec.__dict__, "out_indices": self.out_indices})
        self.spec = spec
        self._device = resolve_device(self.device)
        model, self.weights_sha256 = create_backbone(spec, self.weights, allow_download=self.allow_download)
        self.model = model.to(self._device).to(memory_format=torch.channels_last)
        self.channels = list(self.model.feature_info.channels())
        self.strides = list(self.model.feature_info.reduction())
        self.raw_dim = sum(self.channels)
        self._projection = None
        if self.reduction != "none":
            if not self.target_dim or self.target_dim >= self.raw_dim:
                raise ValueError(f"target_dim must be smaller than the raw dimension {self.raw_dim}")
            if self.reduction == "random_projection":
                g = torch.Generator().manual_seed(self.seed)
                p = torch.randn(self.raw_dim, self.target_dim, generator=g) / math.sqrt(self.target_dim)
                self._projection = p.to(self._device)
        self.dim = self.target_dim if self.reduction != "none" else self.raw_dim
        self.dtype_used = self._choose_precision()

    # -- configuration ----------------------------------------------------------
    def preprocessing(self, policy: str = "resize") -> Preprocessing:
        return Preprocessing(size=self.spec.input_size, policy=policy, mean=self.spec.mean, std=self.spec.std)

    def get_params(self) -> dict:
        return dict(backbone=self.backbone, timm_name=self.spec.timm_name, out_indices=list(self.out_indices),
                    channels=self.channels, strides=self.strides, aggregation=self.aggregation,
                    reduction=self.reduction, target_dim=self.target_dim, dim=self.dim, seed=self.seed,
                    weights_sha256=self.weights_sha256, precision=self.dtype_used,
                    device=self._device.type)

    def grid(self, size: int) -> tuple[int, int]:
        s = size // min(self.strides)
        return s, s

    # -- forward ------------------------------------------------------------------
    def _autocast(self, dtype_name: str):
        if dtype_name == "fp32":
            return torch.autocast(self._device.type, enabled=False)
        dtype = torch.bfloat16 if dtype_name == "bf16" else torch.float16
        return torch.autocast(self._device.type, dtype=dtype)

    def _embed(self, x: torch.Tensor, dtype_name: str) -> torch.Tensor:
        x = x.to(self._device, non_blocking=True).to(memory_format=torch.channels_last)
        with torch.inference_mode(), self._autocast(dtype_name):
            maps = self.model(x)
        maps = [m.float() for m in maps]
        target = maps[0].shape[-2:]
        out = []
        for m in maps:
            if self.aggregation == "same":
                m = F.avg_pool2d(m, 3, stride=1, padding=1, count_include_pad=False)
                if m.shape[-2:] != target:
                    m = F.interpolate(m, size=target, mode="bilinear", align_corners=False)
            else:  # published code: valid 3×3 pooling, then adaptive pooling back to the finest grid
                m = F.adaptive_avg_pool2d(F.avg_pool2d(m, 3, stride=1, padding=0), target)
            out.append(m)
        feats = torch.cat(out, dim=1)  # B, D, h, w
        b, d, h, w = feats.shape
        feats = feats.permute(0, 2, 3, 1).reshape(b, h * w, d)
        if self.reduction == "random_projection":
            feats = feats @ self._projection
        elif self.reduction == "adaptive_avg":
            feats = F.adaptive_avg_pool1d(feats.reshape(b * h * w, 1, d), self.target_dim).reshape(b, h * w, -1)
        return feats.contiguous()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) → (B, h·w, dim) float32 on the CPU, in chunks of batch_size."""
        chunks = [self._embed(x[i:i + self.batch_size], self.dtype_used).cpu()
                  for i in range(0, x.shape[0], self.batch_size)]
        return torch.cat(chunks) if chunks else torch.empty(0, 0, self.dim)

    def _choose_precision(self) -> str:
        if self.precision != "auto":
            return self.precision
        if self._device.type == "cuda":
            candidate = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        elif cpu_supports_bf16():
            candidate = "bf16"
        else:
            return "fp32"
        # A fixed, structured probe input: check that mixed precision keeps embeddings close.
        g = torch.Generator().manual_seed(1234)
        size = self.spec.input_size
        yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
        probe = torch.stack([torch.sin(6 * xx) * torch.cos(4 * yy)] * 3)[None]
        probe = torch.cat([probe, torch.randn(1, 3, size, size, generator=g) * 0.5]).clamp(-2, 2)
        ref, amp = self._embed(probe, "fp32"), self._embed(probe, candidate)
        err = (torch.linalg.vector_norm(ref - amp) / torch.linalg.vector_norm(ref)).item()
        return candidate if err < AMP_TOLERANCE else "fp32"


def extract(extractor: FeatureExtractor, pre: Preprocessing, images, progress=None) -> np.ndarray:
    """Images (model inputs in [0, 1]) → float32 array (N, h·w, dim), batched."""
    out = []
    images = list(images)
    for i in range(0, len(images), extractor.batch_size):
        batch = pre.batch(images[i:i + extractor.batch_size])
        out.append(extractor(batch).numpy())
        if progress is not None:
            progress(min(i + extractor.batch_size, len(images)), len(images))
    return np.concatenate(out) if out else np.empty((0, 0, extractor.dim), np.float32)
