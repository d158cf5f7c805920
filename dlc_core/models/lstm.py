"""The LSTM digit classifier of METHOD.md §3.2 (the PyTorch MNIST-RNN example's head), reading an image pixel by
pixel (784 steps of one value, the paper's protocol) or row by row (28 steps of 28, the fast variant).

The model takes raw uint8-range images (B, 28, 28) and normalises them itself (MNIST mean and std), so a node or
evaluator passes pixels as they come. It returns logits; log_softmax + NLL is cross-entropy on them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from ..checkpoint import load_model

MODES = {"pixel": (784, 1), "row": (28, 28)}  # steps, values per step
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
CLASSES = 10


@dataclass(frozen=True)
class LSTMConfig:
    """Constructor arguments, as recorded in the model card."""

    mode: str = "pixel"
    hidden: int = 64

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.hidden < 1:
            raise ValueError(f"hidden must be >= 1, got {self.hidden}")

    def card(self) -> dict:
        return asdict(self)


class LSTMClassifier(nn.Module):
    """LSTM -> last step -> BatchNorm1d -> Dropout(0.25) -> Linear(h, 32) -> ReLU -> Dropout(0.5) -> Linear(32, 10).

    The gate biases get the chrono initialisation (Tallec & Ollivier, ICLR 2018): forget bias log(u), u ~ U(1, T-1)
    for a sequence of T steps, input bias its negative, so that memory spans the whole sequence from the start; with
    the default init a 784-step sequence sits at chance for many epochs.
    """

    def __init__(self, config: LSTMConfig) -> None:
        super().__init__()
        self.config = config
        steps, width = MODES[config.mode]
        self.steps, self.width = steps, width
        self.lstm = nn.LSTM(width, config.hidden, batch_first=True)
        h = config.hidden
        with torch.no_grad():  # PyTorch gate order: input, forget, cell, output; the two bias vectors add up
            forget = torch.log(torch.empty(h).uniform_(1.0, max(steps - 1, 2)))
            self.lstm.bias_hh_l0[: 2 * h].zero_()
            self.lstm.bias_ih_l0[:h].copy_(-forget)
            self.lstm.bias_ih_l0[h : 2 * h].copy_(forget)
        self.head = nn.Sequential(
            nn.BatchNorm1d(h), nn.Dropout(0.25), nn.Linear(h, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, CLASSES)
        )

    def sequence(self, images: Tensor) -> Tensor:
        """(B, 28, 28) pixel values 0-255 -> normalised (B, steps, width), read row-major."""
        x = (images.float() / 255.0 - MNIST_MEAN) / MNIST_STD
        return x.reshape(len(x), self.steps, self.width)

    def forward(self, images: Tensor) -> Tensor:
        """Logits (B, 10) of a batch of 28x28 images."""
        out, _ = self.lstm(self.sequence(images))
        return self.head(out[:, -1])


def load_lstm_model(folder: str | Path, device: torch.device) -> tuple[LSTMClassifier, dict]:
    """A trained LSTM classifier in eval mode on `device`, and its card."""
    return load_model(folder, "lstm", ("lstm",), lambda card: LSTMClassifier(LSTMConfig(**card["config"])), device)
