"""Expectation-Maximization aggregation of feature maps into a few compact semantic bases.

The EM attention of EMANet (Li et al., "Expectation-Maximization Attention Networks for Semantic Segmentation",
ICCV 2019), used by VLSA-Net (arXiv 2509.08570) to cluster dispersed visual features into compact semantic centres
before they are matched with text.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from monai.networks.layers.factories import Conv
from monai.networks.layers.utils import get_norm_layer

__all__ = ["EMAggregation"]


class EMAggregation(nn.Module):
    """EM aggregation block: re-expresses every pixel as a mixture of ``num_bases`` learned, L2-normalised bases.

    For an input ``x`` with ``C`` channels and ``N`` pixels:

    1. ``X = conv_in(x)`` (1x1 conv), flattened to ``[B, C, N]``;
    2. starting from the bases buffer ``mu [1, C, K]``, ``iterations`` EM steps:
       E-step ``z = softmax(X^T mu / temperature)`` over the ``K`` bases (``[B, N, K]``),
       M-step ``mu = X z / (1e-6 + sum_n z)``, then L2-normalised along ``C``;
    3. responsibilities of the final bases ``z = softmax(X^T mu / temperature)`` (one more E-step, so the returned
       ``z`` and ``mu`` are consistent with each other);
    4. reconstruction ``relu(mu z^T)``, then ``conv_out`` (1x1 conv + norm), added to the input, ``relu``.

    Gradients: with ``truncate_gradient=True`` (default, as in EMANet) the EM iterations run without autograd, so the
    bases act as a fixed-point estimate; the final E-step and the reconstruction keep their graph, so ``conv_in``
    still learns through the responsibilities. With ``False`` gradients also flow through every iteration.

    Bases buffer: in training mode, after each forward, ``mu_buf = momentum * mu_buf + (1 - momentum) * mean_b(mu)``,
    re-normalised. Under ``torch.distributed`` (initialised, world size > 1) the batch mean is all-reduce-averaged
    first, so every rank keeps identical bases (every rank must then run the same number of training forwards). In
    eval mode the buffer is never changed and the output is deterministic. EM arithmetic runs in float32 (autocast
    off) because the normalisation by ``sum_n z`` is fragile in half precision.

    Args:
        in_channels: channels ``C`` of the input (and output).
        num_bases: number of bases ``K``.
        iterations: EM iterations ``T`` (>= 1).
        momentum: moving-average momentum of the bases buffer, in [0, 1).
        temperature: divisor of the E-step similarities (1.0 as in EMANet; lower values give harder assignments).
        norm: normalisation after ``conv_out`` (MONAI norm name or ``(name, args)``).
        spatial_dims: 2 or 3.
        truncate_gradient: run the EM iterations without autograd (see above).

    Inputs:
        x: ``[B, C, *spatial]``.

    Returns:
        ``[B, C, *spatial]``; with ``return_assignments=True`` also the responsibilities ``z [B, N, K]`` (each row sums
        to one) and the final bases ``mu [B, C, K]`` (unit norm along ``C``).

    Example::

        em = EMAggregation(in_channels=64, num_bases=32, iterations=3)
        y, z, bases = em(torch.rand(2, 64, 14, 14), return_assignments=True)  # [2,64,14,14], [2,196,32], [2,64,32]
    """

    def __init__(
        self,
        in_channels: int,
        num_bases: int = 64,
        iterations: int = 3,
        momentum: float = 0.9,
        temperature: float = 1.0,
        norm: str | tuple = "batch",
        spatial_dims: int = 2,
        truncate_gradient: bool = True,
    ) -> None:
        super().__init__()
        if in_channels < 1 or num_bases < 1:
            raise ValueError(f"in_channels and num_bases must be >= 1, got {in_channels} and {num_bases}.")
        if iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {iterations}.")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}.")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}.")
        self.in_channels = in_channels
        self.num_bases = num_bases
        self.iterations = iterations
        self.momentum = momentum
        self.temperature = temperature
        self.truncate_gradient = truncate_gradient
        conv_type = Conv[Conv.CONV, spatial_dims]
        self.conv_in = conv_type(in_channels, in_channels, kernel_size=1)
        self.conv_out = nn.Sequential(
            conv_type(in_channels, in_channels, kernel_size=1, bias=False),
            get_norm_layer(norm, spatial_dims, in_channels),
        )
        bases = torch.randn(1, in_channels, num_bases) * math.sqrt(2.0 / num_bases)
        self.register_buffer("bases", F.normalize(bases, dim=1))

    def _e_step(self, features: torch.Tensor, bases: torch.Tensor) -> torch.Tensor:
        """features [B, C, N], bases [B, C, K] -> responsibilities [B, N, K]."""
        return torch.softmax(torch.bmm(features.transpose(1, 2), bases) / self.temperature, dim=2)

    @staticmethod
    def _m_step(features: torch.Tensor, assignments: torch.Tensor) -> torch.Tensor:
        """features [B, C, N], responsibilities [B, N, K] -> unit-norm bases [B, C, K]."""
        weights = assignments / (1e-6 + assignments.sum(dim=1, keepdim=True))
        return F.normalize(torch.bmm(features, weights), dim=1)

    def _update_bases(self, bases: torch.Tensor) -> None:
        with torch.no_grad():
            batch_mean = bases.detach().float().mean(dim=0, keepdim=True)
            if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
                dist.all_reduce(batch_mean, op=dist.ReduceOp.SUM)
                batch_mean /= dist.get_world_size()
            updated = self.momentum * self.bases + (1.0 - self.momentum) * batch_mean.to(self.bases.dtype)
            self.bases.copy_(F.normalize(updated, dim=1))

    def _iterate(self, features: torch.Tensor, bases: torch.Tensor) -> torch.Tensor:
        for _ in range(self.iterations):
            bases = self._m_step(features, self._e_step(features, bases))
        return bases

    def _expectation_maximization(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """features [B, C, *spatial] -> final bases [B, C, K], responsibilities [B, N, K], reconstruction [B, C, N]."""
        flat = features.flatten(2).float()
        # A copy: the buffer is updated in place after the graph has used these values.
        bases = self.bases.to(torch.float32, copy=True).expand(features.shape[0], -1, -1)
        # Branches instead of nullcontext, which TorchScript lacks.
        if self.truncate_gradient:
            with torch.no_grad():
                bases = self._iterate(flat, bases)
        else:
            bases = self._iterate(flat, bases)
        assignments = self._e_step(flat, bases)
        return bases, assignments, torch.bmm(bases, assignments.transpose(1, 2))

    def forward(
        self, x: torch.Tensor, return_assignments: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out, assignments, bases = self.aggregate(x)
        if return_assignments:
            return out, assignments, bases
        return out

    @torch.jit.export
    def aggregate(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``forward(x, return_assignments=True)`` with a single return type (for TorchScript callers)."""
        if x.ndim < 3 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"EMAggregation expects [B, {self.in_channels}, *spatial] input, got shape {list(x.shape)}."
            )
        features = self.conv_in(x)
        if torch.jit.is_scripting():  # TorchScript's autocast needs a constant device: float32 by the casts alone
            bases, assignments, reconstruction = self._expectation_maximization(features)
        else:
            with torch.autocast(device_type=x.device.type, enabled=False):
                bases, assignments, reconstruction = self._expectation_maximization(features)
        reconstruction = F.relu(reconstruction.to(features.dtype).reshape(features.shape))
        out = F.relu(x + self.conv_out(reconstruction))
        if self.training:
            if torch.jit.is_scripting():  # the update uses torch.distributed; TorchScript is for inference
                raise RuntimeError("A scripted EMAggregation runs in eval mode only: train the eager module.")
            else:
                self._update_bases(bases)
        return out, assignments, bases
