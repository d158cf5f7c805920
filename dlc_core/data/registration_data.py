"""Data SPECs for object registration -> training, validation and test pair sets (DECISIONS.md D5).

- ``shapes``: the procedural set (dlc_core.data.shapes). Training uses the train instances of the 14 training
  categories; validation uses further train-split instances; tests use the test-split instances of the training
  categories (clean / noisy / partial) or of the 6 held-out categories (unseen). One trained model therefore
  serves both the clean and the unseen-category tables.
- ``modelnet40:PATH``: the HDF5 layout; ``unseen`` trains on labels < 20 and tests on labels >= 20; validation is
  every 20th training cloud (DCP selected its checkpoint on the test set; we do not).
- ``bunny:PATH``: real pairs of overlapping Stanford scans (dlc_core.data.bunny.BUNNY_PAIRS), each scan pair
  moved into the target's frame with bun.conf, normalised like ModelNet (target centroid at 0, radius 1), and
  used several times with different random transforms. Evaluation only: ten scans are too few to train on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..pointcloud import transform_cloud
from . import bunny, modelnet, shapes
from .registration_pairs import PairDataset, PairOptions

PROTOCOLS = ("clean", "noisy", "unseen", "partial")
PARTIAL_KEEP = 0.75
SHAPES_TRAIN_PER_CATEGORY = 200
SHAPES_VAL_PER_CATEGORY = 5
SHAPES_TEST_PER_CATEGORY = {"seen": 20, "unseen": 40}
BUNNY_REPEATS = 10
VAL_SEED_OFFSET, TEST_SEED_OFFSET = 1_000_003, 2_000_003


@dataclass(frozen=True)
class DataSpec:
    """A parsed SPEC: kind and optional path (``shapes``, ``modelnet40:PATH``, ``bunny:PATH``, ...)."""

    kind: str
    path: Path | None

    def __str__(self) -> str:
        return self.kind if self.path is None else f"{self.kind}:{self.path}"


def parse_spec(text: str, kinds: tuple[str, ...]) -> DataSpec:
    """Parse ``KIND[:PATH]``, refusing kinds outside `kinds` and missing paths, with one clear line."""
    kind, _, path = text.partition(":")
    if kind not in kinds:
        raise InputError(f"data spec {text!r}: unknown kind {kind!r} (expected one of {', '.join(kinds)})")
    if kind != "shapes" and not path:
        raise InputError(f"data spec {text!r}: {kind} needs a path, e.g. {kind}:DIR")
    return DataSpec(kind, Path(path) if path else None)


def parse_specs(text: str, kinds: tuple[str, ...]) -> list[DataSpec]:
    """Several SPECs joined by '+', e.g. ``sim:runs/sim+kitti:../shared/data/kitti_mini``."""
    return [parse_spec(part, kinds) for part in text.split("+")]


def pair_options(protocol: str, num_points: int) -> PairOptions:
    """The pair-drawing options of a protocol variant."""
    if protocol not in PROTOCOLS:
        raise InputError(f"protocol {protocol!r} is not one of {', '.join(PROTOCOLS)}")
    return PairOptions(
        num_points=num_points,
        noisy=protocol == "noisy",
        partial_keep=PARTIAL_KEEP if protocol == "partial" else None,
    )


def training_sets(spec: DataSpec, protocol: str, num_points: int, seed: int) -> tuple[PairDataset, PairDataset]:
    """(train, validation) pair sets; training pairs are redrawn each epoch, validation pairs are fixed."""
    options = pair_options(protocol, num_points)
    if spec.kind == "shapes":
        train, _ = shapes.shape_set("train", shapes.TRAIN_CATEGORIES, SHAPES_TRAIN_PER_CATEGORY)
        val = np.stack(
            [
                shapes.sample_shape(c, SHAPES_TRAIN_PER_CATEGORY + i, "train")
                for c in shapes.TRAIN_CATEGORIES
                for i in range(SHAPES_VAL_PER_CATEGORY)
            ]
        )
    elif spec.kind == "modelnet40":
        clouds, labels = modelnet.read_modelnet(spec.path, "train")
        if protocol == "unseen":
            clouds = clouds[labels < modelnet.UNSEEN_FIRST_LABEL]
        is_val = np.arange(len(clouds)) % 20 == 19
        train, val = clouds[~is_val], clouds[is_val]
    else:
        raise InputError(f"data spec {spec}: {spec.kind} is an evaluation set; train on shapes or modelnet40:PATH")
    return (
        PairDataset(list(train), options, seed, fixed=False),
        PairDataset(list(val), options, seed + VAL_SEED_OFFSET, fixed=True),
    )


def evaluation_set(spec: DataSpec, protocol: str, num_points: int, seed: int = 0) -> PairDataset:
    """The fixed evaluation pairs of a SPEC under a protocol variant."""
    options = pair_options(protocol, num_points)
    seed = seed + TEST_SEED_OFFSET
    if spec.kind == "shapes":
        group = "unseen" if protocol == "unseen" else "seen"
        categories = shapes.UNSEEN_CATEGORIES if group == "unseen" else shapes.TRAIN_CATEGORIES
        clouds, _ = shapes.shape_set("test", categories, SHAPES_TEST_PER_CATEGORY[group])
        return PairDataset(list(clouds), options, seed, fixed=True)
    if spec.kind == "modelnet40":
        clouds, labels = modelnet.read_modelnet(spec.path, "test")
        if protocol == "unseen":
            clouds = clouds[labels >= modelnet.UNSEEN_FIRST_LABEL]
        return PairDataset(list(clouds), options, seed, fixed=True)
    if spec.kind == "bunny":
        return PairDataset(bunny_base_pairs(spec.path) * BUNNY_REPEATS, options, seed, fixed=True)
    raise InputError(f"data spec {spec}: not a registration data set")


def bunny_base_pairs(folder: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """(source in target frame, target) for each of BUNNY_PAIRS, normalised by the target's centroid and radius."""
    conf = Path(folder) / bunny.CONF_NAME
    if not conf.is_file():
        raise InputError(f"{folder}: {bunny.CONF_NAME} is missing (expected the Stanford bunny scan folder)")
    poses = bunny.read_conf(conf)
    names = sorted({name for pair in bunny.BUNNY_PAIRS for name in pair})
    scans = bunny.load_scans(folder, names)
    bases = []
    for target_name, source_name in bunny.BUNNY_PAIRS:
        g = bunny.pair_transform(poses, target_name, source_name)
        source = transform_cloud(scans[source_name], g)
        target = scans[target_name]
        centre = target.mean(0)
        scale = 1.0 / np.linalg.norm(target - centre, axis=1).max()
        bases.append(((source - centre) * scale, (target - centre) * scale))
    return bases
