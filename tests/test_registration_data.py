"""Registration pairs (exact ground truth, protocol variants), data SPECs, and the ModelNet40 HDF5 reader."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from dlc_core.data.modelnet import read_modelnet
from dlc_core.data.registration_data import bunny_base_pairs, parse_spec, evaluation_set, training_sets
from dlc_core.data.registration_pairs import PairDataset, PairOptions
from dlc_core.data.shapes import sample_shape
from dlc_core.errors import InputError
from dlc_core.geometry import euler_zyx_to_matrix_np


def cloud(seed: int = 0, n: int = 1024) -> np.ndarray:
    return sample_shape("chair", seed, "train", n)


def test_clean_pair_has_exact_ground_truth() -> None:
    ds = PairDataset([cloud()], PairOptions(num_points=512), seed=0, fixed=True)
    p = {k: v.double().numpy() for k, v in ds[0].items()}
    assert np.allclose(p["rotation"], euler_zyx_to_matrix_np(p["euler"]), atol=1e-6)
    moved = p["src"] @ p["rotation"].T + p["translation"]
    d, _ = cKDTree(p["tgt"]).query(moved)
    assert d.max() < 1e-5  # same points, permuted: every moved source point lands on a target point


def test_fixed_pairs_repeat_and_training_pairs_change_per_epoch() -> None:
    fixed = PairDataset([cloud()], PairOptions(num_points=128), seed=3, fixed=True)
    assert torch.equal(fixed[0]["src"], fixed[0]["src"])
    fixed.set_epoch(5)
    assert torch.equal(fixed[0]["rotation"], PairDataset([cloud()], PairOptions(num_points=128), 3, True)[0]["rotation"])
    train = PairDataset([cloud()], PairOptions(num_points=128), seed=3, fixed=False)
    first = train[0]["rotation"].clone()
    train.set_epoch(1)
    assert not torch.equal(first, train[0]["rotation"])


def test_partial_keeps_three_quarters_near_one_far_point() -> None:
    ds = PairDataset([cloud()], PairOptions(num_points=1024, partial_keep=0.75), seed=1, fixed=True)
    p = ds[0]
    assert p["src"].shape == (768, 3) and p["tgt"].shape == (768, 3)
    moved = p["src"].double().numpy() @ p["rotation"].double().numpy().T + p["translation"].double().numpy()
    d, _ = cKDTree(p["tgt"].double().numpy()).query(moved)
    overlap = float((d < 1e-5).mean())
    assert 0.3 < overlap < 0.99  # partial-to-partial: some, not all, source points have their twin


def test_noisy_jitter_is_independent_and_clipped() -> None:
    clean = PairDataset([cloud()], PairOptions(num_points=256), seed=2, fixed=True)[0]
    noisy = PairDataset([cloud()], PairOptions(num_points=256, noisy=True), seed=2, fixed=True)[0]
    moved = noisy["src"].double().numpy() @ noisy["rotation"].double().numpy().T + noisy["translation"].double().numpy()
    d, _ = cKDTree(noisy["tgt"].double().numpy()).query(moved)
    assert 0.005 < np.median(d) < 0.2 and d.max() < 2 * np.sqrt(3) * 0.05 + 1e-6
    assert torch.equal(clean["rotation"], noisy["rotation"])


def test_shapes_splits_and_unseen_categories() -> None:
    train, val = training_sets(parse_spec("shapes", ("shapes",)), "clean", 64, seed=0)
    assert len(train) == 14 * 200 and len(val) == 14 * 5
    seen, unseen = evaluation_set(parse_spec("shapes", ("shapes",)), "clean", 64), evaluation_set(parse_spec("shapes", ("shapes",)), "unseen", 64)
    assert len(seen) == 14 * 20 and len(unseen) == 6 * 40
    train_keys = {np.asarray(c[:4]).tobytes() for c in train.bases}
    assert not any(np.asarray(c[:4]).tobytes() in train_keys for c in list(val.bases) + list(seen.bases))


def test_spec_errors_are_one_line() -> None:
    with pytest.raises(InputError, match="unknown kind 'mnist'"):
        parse_spec("mnist:x", ("shapes", "bunny"))
    with pytest.raises(InputError, match="needs a path"):
        parse_spec("bunny", ("shapes", "bunny"))
    with pytest.raises(InputError, match="evaluation set"):
        training_sets(parse_spec("bunny:x", ("bunny",)), "clean", 64, 0)
    with pytest.raises(InputError, match="protocol"):
        evaluation_set(parse_spec("shapes", ("shapes",)), "sideways", 64)


def test_bunny_base_pairs_are_aligned_and_normalised(repo_bunny: Path) -> None:
    bases = bunny_base_pairs(repo_bunny)
    assert len(bases) == 8
    for source, target in bases:
        assert np.linalg.norm(target, axis=1).max() == pytest.approx(1.0)
        d, _ = cKDTree(target).query(source[::20])
        assert np.median(d) < 0.02  # aligned by bun.conf: sub-mm residuals in metres are ~0.005 after scaling
    pairs = evaluation_set(parse_spec(f"bunny:{repo_bunny}", ("bunny",)), "clean", 256)
    assert len(pairs) == 80 and pairs[0]["src"].shape == (256, 3)


def write_h5(path: Path, data: np.ndarray, labels: np.ndarray) -> None:
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=data)
        f.create_dataset("label", data=labels.reshape(-1, 1))


def test_modelnet_reader_on_a_tiny_hdf5(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(3, 32, 3)).astype(np.float32), rng.normal(size=(2, 32, 3)).astype(np.float32)
    write_h5(tmp_path / "ply_data_train0.h5", a, np.array([1, 25, 3]))
    write_h5(tmp_path / "ply_data_train1.h5", b, np.array([30, 4]))
    write_h5(tmp_path / "ply_data_test0.h5", b, np.array([7, 22]))
    data, labels = read_modelnet(tmp_path, "train")
    assert np.array_equal(data, np.concatenate([a, b])) and labels.tolist() == [1, 25, 3, 30, 4]
    spec = parse_spec(f"modelnet40:{tmp_path}", ("modelnet40",))
    assert len(evaluation_set(spec, "unseen", 16)) == 1 and len(evaluation_set(spec, "clean", 16)) == 2


def test_modelnet_reader_refuses_broken_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no ply_data_train"):
        read_modelnet(tmp_path, "train")
    good = tmp_path / "ply_data_train0.h5"
    write_h5(good, np.zeros((2, 8, 3), np.float32), np.array([0, 1]))
    raw = good.read_bytes()
    good.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InputError, match="ply_data_train0.h5: cannot read HDF5"):
        read_modelnet(tmp_path, "train")
    nan = np.zeros((2, 8, 3), np.float32)
    nan[1, 3, 0] = np.nan
    write_h5(good, nan, np.array([0, 1]))
    with pytest.raises(InputError, match="NaN"):
        read_modelnet(tmp_path, "train")
    with h5py.File(good, "w") as f:
        f.create_dataset("points", data=np.zeros((2, 8, 3)))
    with pytest.raises(InputError, match="'data' and 'label'"):
        read_modelnet(tmp_path, "train")


@pytest.mark.parametrize(
    "make, pattern",
    [(lambda d: d[:, :2], "at least 3"), (lambda d: np.where(np.arange(8)[None, :, None] >= 0, d[:, :1], d), "identical")],
)
def test_modelnet_reader_refuses_degenerate_clouds(tmp_path: Path, make, pattern: str) -> None:
    data = np.random.default_rng(0).normal(size=(2, 8, 3)).astype(np.float32)
    write_h5(tmp_path / "ply_data_test0.h5", np.ascontiguousarray(make(data)), np.array([0, 1]))
    with pytest.raises(InputError, match=pattern):
        read_modelnet(tmp_path, "test")
