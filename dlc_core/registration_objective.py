"""What DLC trains for rigid registration: the DCP task loss, the rigid chart, and the landscape L_θ(p; x).

The chart (METHOD.md §2) is the 6-vector p = (Euler [z, y, x] in radians, t): y ⊕ ε = y + ε with Gaussian ε on
each angle and each translation coordinate, d² = ‖ε‖².

The landscape has three kinds (DECISIONS.md D1), chosen with ``--landscape`` and recorded in the model card:
- ``label``      (reading A): p in the label slot of the task loss against the network's final estimate;
- ``procrustes`` (reading B): the alignment residual mean_i ‖R(p) x_i + t(p) − ŷ_i‖² of the last pass's soft
                  correspondences ŷ, the objective the SVD head minimises;
- ``rerun``      (reading C): one more network pass started from p, composed with p, scored by the task loss
                  against the truth; the 1 + 2K starts of a step run as one batch.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from .dlc_loss import AdditiveGaussianChart, Landscape
from .geometry import euler_zyx_to_matrix, transform_points
from .models import RegistrationModel
from .models.dcp import PassResult

LANDSCAPES = ("label", "procrustes", "rerun")
PASS_DISCOUNT = 0.9


def rigid_chart(noise_rot_deg: float, noise_trans: float) -> AdditiveGaussianChart:
    """The registration chart: σ = noise_rot_deg on each Euler angle (stored in radians), noise_trans on each t."""
    rot = math.radians(noise_rot_deg)
    return AdditiveGaussianChart(
        scales=(rot, rot, rot, noise_trans, noise_trans, noise_trans),
        names=("euler_z_rad", "euler_y_rad", "euler_x_rad", "t_x", "t_y", "t_z"),
    )


def chart_point(euler: Tensor, translation: Tensor) -> Tensor:
    """The 6-vector (Euler [z, y, x], t) of a transform, shape (..., 6)."""
    return torch.cat([euler, translation], -1)


def chart_transform(p: Tensor) -> tuple[Tensor, Tensor]:
    """(R, t) of chart points p (..., 6)."""
    return euler_zyx_to_matrix(p[..., :3]), p[..., 3:]


def task_loss(r_pred: Tensor, t_pred: Tensor, r_gt: Tensor, t_gt: Tensor) -> Tensor:
    """DCP's loss per example: MSE(R_predᵀ R_gt, I) over 9 entries + MSE(t_pred, t_gt) over 3 entries."""
    eye = torch.eye(3, dtype=r_pred.dtype, device=r_pred.device)
    rot = (r_pred.transpose(-1, -2) @ r_gt - eye).pow(2).flatten(-2).mean(-1)
    return rot + (t_pred - t_gt).pow(2).mean(-1)


def unrolled_loss(passes: list[PassResult], r_gt: Tensor, t_gt: Tensor) -> Tensor:
    """Σ_i 0.9^i · task loss after pass i (PRNet's discount), averaged over the batch."""
    return sum(PASS_DISCOUNT**i * task_loss(p.rotation, p.translation, r_gt, t_gt).mean() for i, p in enumerate(passes))


def make_landscape(
    kind: str, model: RegistrationModel, src: Tensor, tgt: Tensor, passes: list[PassResult], r_gt: Tensor, t_gt: Tensor
) -> Landscape:
    """L_θ(· ; x) for a batch as a callable on stacked chart points (S, B, 6) -> (S, B)."""
    if kind == "label":
        final = passes[-1]
        return lambda p: task_loss(final.rotation, final.translation, *chart_transform(p))
    if kind == "procrustes":
        corr = passes[-1].correspondences
        return lambda p: (transform_points(*chart_transform(p), src) - corr).pow(2).sum(-1).mean(-1)
    if kind == "rerun":
        return _rerun_landscape(model, src, tgt, r_gt, t_gt)
    raise ValueError(f"landscape must be one of {', '.join(LANDSCAPES)}, got {kind!r}")


def _rerun_landscape(model: RegistrationModel, src: Tensor, tgt: Tensor, r_gt: Tensor, t_gt: Tensor) -> Callable[[Tensor], Tensor]:
    def landscape(p: Tensor) -> Tensor:
        s, b = p.shape[:2]
        r_p, t_p = chart_transform(p.reshape(s * b, 6))
        expand = lambda x: x.unsqueeze(0).expand(s, *x.shape).reshape(s * b, *x.shape[1:])  # noqa: E731
        out = model(expand(src), expand(tgt), passes=1, init=(r_p, t_p))[-1]
        return task_loss(out.rotation, out.translation, expand(r_gt), expand(t_gt)).view(s, b)

    return landscape
