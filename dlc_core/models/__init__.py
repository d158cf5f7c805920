"""Models of dlc_core, and loading them from a model folder (dlc_core.checkpoint) by task and backbone."""

from __future__ import annotations

from pathlib import Path

import torch

from ..checkpoint import load_model
from .dcp import BACKBONES as DCP_BACKBONES
from .dcp import DCPConfig, IterativeDCP
from .prnet import BACKBONES as PRNET_BACKBONES
from .prnet import PRNet, PRNetConfig

REGISTRATION_BACKBONES = DCP_BACKBONES + PRNET_BACKBONES
RegistrationModel = IterativeDCP | PRNet


def registration_model(config: DCPConfig | PRNetConfig) -> RegistrationModel:
    """The registration model for an architecture config (DCP passes or PRNet iterations share one interface)."""
    return PRNet(config) if isinstance(config, PRNetConfig) else IterativeDCP(config)


def build_registration_model(card: dict) -> RegistrationModel:
    """An untrained registration model with the architecture a card describes."""
    config = {**card["config"], "backbone": card["backbone"]}
    cls = PRNetConfig if card["backbone"] in PRNET_BACKBONES else DCPConfig
    return registration_model(cls.from_card(config))


def load_registration_model(folder: str | Path, device: torch.device) -> tuple[RegistrationModel, dict]:
    """A trained registration model in eval mode on `device`, and its card."""
    return load_model(folder, "registration", REGISTRATION_BACKBONES, build_registration_model, device)
