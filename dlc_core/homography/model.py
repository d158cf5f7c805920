"""The DeepLK-style homography model (METHOD.md §3.3), sized for a CPU: a regression network for the initial H,
separate feature pyramids for input and template (3 levels, stride 2 each), each level reduced to a one-channel
DLKFM map, and inverse-compositional LK coarse to fine from the regression estimate. No ground truth at test time:
when a level of LK diverges (a non-finite H, a larger LK loss than at its start, or template corners more than
16 px outside the input), the estimate from before that level is kept and the pair is flagged."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checkpoint import load_model
from .geometry import INPUT_SIDE, NOMINAL_CORNERS, TEMPLATE_SIDE, corners_of, homography_from_corners, rescale
from .lk import inverse_compositional, lk_loss, standardised

LEVELS = 3
PAD = (INPUT_SIDE - TEMPLATE_SIDE) // 2  # the template sits at (32, 32) of the regression input
OUTSIDE_MARGIN = 16.0  # px beyond the input's border that LK corners may reach before the level counts as diverged


@dataclass(frozen=True)
class HomographyConfig:
    """Constructor and inference settings, as recorded in the model card."""

    channels: int = 16
    regression_channels: tuple[int, ...] = (32, 64, 128, 128)
    regression_grid: int = 4  # the last feature map is pooled to grid x grid cells, keeping where things are
    regression_hidden: int = 256  # width of the hidden layer of the corner head; 0: one linear layer
    regression_norm: bool = True  # LayerNorm before the hidden ReLU, so the units cannot all die
    regression_standardise: bool = True  # input and template each brought to zero mean, unit variance first
    features: str = "learned"  # LK on the learned DLKFM maps, or "intensity": on the grey-level pyramid (standardised)
    lk_iters: int = 30
    lk_stop_px: float = 0.01

    def card(self) -> dict:
        d = asdict(self)
        d["regression_channels"] = list(self.regression_channels)
        return d

    @classmethod
    def from_card(cls, d: dict) -> "HomographyConfig":
        """The config a card records; cards written before the regression standardised its inputs lack the key."""
        return cls(**{"regression_standardise": False, **d, "regression_channels": tuple(d["regression_channels"])})


def conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class RegressionNet(nn.Module):
    """Input and zero-padded template stacked as 2 channels -> corner offsets (px) from the nominal square -> H.
    The features are pooled to a grid rather than to one vector: where a structure sits is what the corners need.
    Without `norm`, the hidden ReLUs died in training on a GPU: all 256 in one seed, all but 9-10 in two others
    (bench/results/regression_units.json); normalised pre-activations keep about half of them firing per pair.
    With `standardise`, each image is brought to zero mean and unit variance before it is stacked, so a gain or an
    offset between the camera's exposures cannot move the corners (without it, an exposure change took the median
    corner error of the previously shipped regression from 8.9 to 17.3 px, bench/results/homography_photometric.json)."""

    def __init__(self, channels: tuple[int, ...], grid: int, hidden: int, norm: bool, standardise: bool) -> None:
        super().__init__()
        self.standardise = standardise
        layers, cin = [], 2
        for c in channels:
            layers += [conv(cin, c, 2), conv(c, c)]
            cin = c
        layers += [nn.AdaptiveAvgPool2d(grid), nn.Flatten()]
        width = cin * grid * grid
        if hidden:
            layers += [nn.Linear(width, hidden), *([nn.LayerNorm(hidden)] if norm else []), nn.ReLU(inplace=True)]
            width = hidden
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, 8)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def stacked(self, image: Tensor, template: Tensor) -> Tensor:
        """What the body sees: input and padded template as 2 channels, (B, 2, 192, 192)."""
        if self.standardise:
            image, template = standardised(image), standardised(template)
        return torch.cat([image, F.pad(template, (PAD,) * 4)], 1)

    def corners(self, image: Tensor, template: Tensor) -> Tensor:
        """Predicted template corners in the input, (B, 4, 2)."""
        offsets = 32.0 * self.head(self.body(self.stacked(image, template))).reshape(-1, 4, 2)
        return torch.as_tensor(NOMINAL_CORNERS, dtype=image.dtype, device=image.device) + offsets


class FeaturePyramid(nn.Module):
    """Three levels of features (full, 1/2, 1/4 resolution), each reduced to a one-channel DLKFM map."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        c = channels
        self.levels = nn.ModuleList([
            nn.Sequential(conv(1, c), conv(c, c), conv(c, c)),
            nn.Sequential(conv(c, c, 2), conv(c, c)),
            nn.Sequential(conv(c, c, 2), conv(c, c)),
        ])  # fmt: skip

    def forward(self, image: Tensor) -> list[Tensor]:
        maps, x = [], image
        for level in self.levels:
            x = level(x)
            maps.append(dlkfm(x))
        return maps


def dlkfm(features: Tensor, eps: float = 1e-6) -> Tensor:
    """One-channel map: per pixel, the 9x9 Gram matrix G of the channel-centred 3x3 patches, and
    ((max row-sum + min row-sum) / 2) / trace(G), an approximation of λ_max / trace (DeepLK).

    Neither G nor the patches are formed. Centring a patch across channels is centring the map first (y = x − mean_c
    x; the zero padding stays zero), so with S_c = the 3x3 box sum of y_c, row i of G sums to Σ_c y_c(p + o_i) S_c(p)
    and trace(G) is the box sum of Σ_c y_c²: the same map as the formula, 4x faster on a CPU than unfolding."""
    _, _, h, w = features.shape
    y = F.pad(features - features.mean(1, keepdim=True), (1, 1, 1, 1))
    box = F.avg_pool2d(y, 3, stride=1) * 9
    rows = torch.stack([(y[:, :, i : i + h, j : j + w] * box).sum(1) for i in range(3) for j in range(3)], 1)
    trace = F.avg_pool2d(y.square().sum(1, keepdim=True), 3, stride=1)[:, 0] * 9
    return ((rows.amax(1) + rows.amin(1)) / 2 / (trace + eps)).unsqueeze(1)


class HomographyModel(nn.Module):
    """Regression + feature pyramids; forward() estimates H (template -> input pixels) for a batch of pairs."""

    def __init__(self, config: HomographyConfig) -> None:
        super().__init__()
        self.config = config
        self.regression = RegressionNet(config.regression_channels, config.regression_grid, config.regression_hidden,
                                        config.regression_norm, config.regression_standardise)
        self.input_features = FeaturePyramid(config.channels)
        self.template_features = FeaturePyramid(config.channels)

    def pyramids(self, image: Tensor, template: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """The maps LK aligns, for input and template at levels 1 (full), 2, 3: the learned DLKFM maps, or with
        features "intensity" the images averaged down 2x per level (classical LK; the pyramids' weights are unused:
        on single-modal pairs from unseen photos this beat the learned maps, README)."""
        if self.config.features == "intensity":
            return grey_pyramid(image), grey_pyramid(template)
        return self.input_features(image), self.template_features(template)

    def landscape(self, image_maps: list[Tensor], template_maps: list[Tensor], h: Tensor) -> Tensor:
        """L_θ(H): the LK loss summed over the levels, H (..., B, 3, 3) in full-resolution pixels -> (..., B)."""
        return sum(lk_loss(t, i, rescale(h, 0.5**level)) for level, (i, t) in enumerate(zip(image_maps, template_maps)))

    @torch.no_grad()
    def forward(self, image: Tensor, template: Tensor) -> dict[str, Tensor]:
        """{'h', 'h_regression', 'iterations', 'diverged'} for images (B, 1, 192, 192) and (B, 1, 128, 128)."""
        h0 = homography_from_corners(self.regression.corners(image, template).double())
        return {**self.lk_from(image, template, h0), "h_regression": h0}

    @torch.no_grad()
    def lk_from(self, image: Tensor, template: Tensor, h0: Tensor) -> dict[str, Tensor]:
        """{'h', 'iterations', 'diverged'}: LK coarse to fine from the start H0 (B, 3, 3) float64."""
        image_maps, template_maps = self.pyramids(image, template)
        grey = self.config.features == "intensity"  # grey levels: compared standardised, blind to gain and offset
        h, iterations, diverged = h0.clone(), torch.zeros(len(h0), dtype=torch.long), torch.zeros(len(h0), dtype=torch.bool)
        for level in reversed(range(LEVELS)):
            scale = 0.5**level
            result = inverse_compositional(template_maps[level], image_maps[level], rescale(h, scale), self.config.lk_iters,
                                           self.config.lk_stop_px * scale, standardise=grey)  # fmt: skip
            bad = ~torch.isfinite(result.h).all((1, 2)) | (result.loss_end > result.loss_start) | outside(rescale(result.h, 1 / scale))
            h = torch.where(bad[:, None, None], h, rescale(result.h, 1 / scale))
            diverged |= bad.cpu()
            iterations += result.iterations.cpu()
        return {"h": h, "iterations": iterations, "diverged": diverged}


def grey_pyramid(image: Tensor) -> list[Tensor]:
    """The image at full, 1/2 and 1/4 resolution (2x2 averages), the levels FeaturePyramid produces."""
    levels = [image]
    for _ in range(LEVELS - 1):
        levels.append(F.avg_pool2d(levels[-1], 2))
    return levels


def outside(h: Tensor, margin: float = OUTSIDE_MARGIN) -> Tensor:
    """Per pair: does the template, mapped by H, leave the input by more than `margin` px? The template lies inside
    the input by construction, so such an H is a divergence (no ground truth needed)."""
    corners = corners_of(h)
    return ((corners < -margin) | (corners > INPUT_SIDE - 1 + margin)).flatten(1).any(1)


def load_homography_model(folder: str | Path, device: torch.device) -> tuple[HomographyModel, dict]:
    """A trained homography model in eval mode on `device`, and its card."""
    build = lambda card: HomographyModel(HomographyConfig.from_card(card["config"]))  # noqa: E731
    return load_model(folder, "homography", ("deeplk",), build, device)
