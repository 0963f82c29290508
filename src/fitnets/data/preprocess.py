"""Preprocessing fitted on the training split and applied to every split.

* ``standardize``: per-channel mean and standard deviation (the usual choice for the CIFAR zoo).
* ``gcn_zca``: the paper's CIFAR preprocessing (§4.1, from the maxout paper): global contrast normalisation
  of each image (subtract its mean, scale its norm to 55, as pylearn2's ``global_contrast_normalize`` with
  ``scale=55``) and ZCA whitening fitted on the training images (pylearn2's ``ZCA`` with ``filter_bias=0.1``).

Both turn uint8 images into float32 ones, which the batch code and augmentation take as they are.
"""

from __future__ import annotations

import torch

from fitnets.errors import FitNetsError


def global_contrast_normalize(images: torch.Tensor, scale: float = 55.0, eps: float = 1e-8) -> torch.Tensor:
    """Each image minus its mean, scaled so that its L2 norm is ``scale``: ``(N, ...) -> (N, ...)`` float32."""
    x = images.flatten(1).double()
    x = x - x.mean(dim=1, keepdim=True)
    norms = x.norm(dim=1, keepdim=True).clamp_min(eps) / scale
    return (x / norms).float().view(images.shape)


class ZCA:
    """ZCA whitening: ``W = V diag(1 / sqrt(λ + bias)) Vᵀ`` from the eigendecomposition of the training
    covariance, applied as ``(x − mean) W``."""

    def __init__(self, bias: float = 0.1):
        self.bias = bias
        self.mean: torch.Tensor | None = None
        self.matrix: torch.Tensor | None = None

    def fit(self, images: torch.Tensor) -> ZCA:
        x = images.flatten(1).double()
        self.mean = x.mean(dim=0)
        x = x - self.mean
        cov = x.T @ x / len(x)
        eigvals, eigvecs = torch.linalg.eigh(cov)
        self.matrix = (eigvecs * (eigvals.clamp_min(0) + self.bias).rsqrt()) @ eigvecs.T
        return self

    def __call__(self, images: torch.Tensor, batch: int = 4096) -> torch.Tensor:
        if self.matrix is None or self.mean is None:
            raise RuntimeError("ZCA.fit first")
        out = torch.empty(images.shape, dtype=torch.float32)
        flat_out = out.view(len(images), -1)
        for start in range(0, len(images), batch):
            x = images[start:start + batch].flatten(1).double()
            flat_out[start:start + batch] = ((x - self.mean) @ self.matrix).float()
        return out


class Preprocess:
    """A preprocessing fitted on training images (uint8 ``(N, C, H, W)``), then applied to any split."""

    def __init__(self, kind: str):
        if kind not in ("none", "standardize", "gcn_zca"):
            raise FitNetsError(f"unknown preprocessing {kind!r}; use none, standardize or gcn_zca")
        self.kind = kind
        self.zca: ZCA | None = None
        self.mean: torch.Tensor | None = None
        self.std: torch.Tensor | None = None

    def fit(self, images: torch.Tensor) -> Preprocess:
        if self.kind == "standardize":
            x = images.float().div(255)
            self.mean = x.mean(dim=(0, 2, 3), keepdim=True)
            self.std = x.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
        elif self.kind == "gcn_zca":
            self.zca = ZCA().fit(global_contrast_normalize(images))
        return self

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if self.kind == "none":
            return images
        if self.kind == "standardize":
            if self.mean is None or self.std is None:
                raise RuntimeError("Preprocess.fit first")
            return ((images.float().div(255) - self.mean) / self.std).contiguous()
        if self.zca is None:
            raise RuntimeError("Preprocess.fit first")
        return self.zca(global_contrast_normalize(images))
