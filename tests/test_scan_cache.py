"""The scan cache (``dlc cache scans``, ``--data cache:FILE``) against the real scans it was made from (kitti_mini)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dlc_core.data.kitti import KittiSequence, finite_points
from dlc_core.data.scan_cache import read_scan_cache
from dlc_core.data.scan_pairs import ScanPairDataset
from dlc_core.errors import InputError
from dlc_core.scan_preprocess import ScanPreprocess, network_candidates
from dlc_ros.cli import main

REPO = Path(__file__).resolve().parents[1]
SELECT = ["--poses-name", "poses.txt", "--kitti-sequences", "10", "--val-sequences", "02"]
TINY = ["--backbone", "dcp", "--channels", "8,8,16,16", "--k", "8", "--emb-dims", "16", "--ff-dims", "32", "--n-heads", "2", "--num-points", "64",
        "--batch-size", "4", "--passes", "1", "--epochs", "1", "--steps", "1", "--max-gap", "1", "--seed", "0", "--device", "cpu"]  # fmt: skip
# float32 keeps |x| <= 40 m to 2^-24 * 40 m = 2.4e-6 m per coordinate; after the source's turn (up to sqrt(3) of that),
# division by the scale (40 m) and the float32 cast of the network input (2^-24 each side): 2.2e-7 network units.
POINT_TOLERANCE = np.sqrt(3) * 2.0**-24 * 40 / 40 + 2 * 2.0**-24


@pytest.fixture(scope="module")
def mini(shared_data: Path) -> Path:
    return shared_data / "kitti_mini"


@pytest.fixture(scope="module")
def cache(mini: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """kitti_mini 10 (training, 8 scans) and 02 (validation, 10 scans) cached with the default preprocessing."""
    path = tmp_path_factory.mktemp("cache") / "mini.npz"
    assert main(["cache", "scans", "--data", f"kitti:{mini}", *SELECT, "--out", str(path)]) == 0
    return path


def test_cache_holds_the_scans_candidates_and_the_calibrated_poses(mini: Path, cache: Path) -> None:
    read = read_scan_cache(cache)
    assert [(Path(s.name).name, s.role, len(s)) for s in read.sequences] == [("10", "train", 8), ("02", "val", 10)]
    folder = mini / "sequences" / "02"
    seq = read.role("val")[0]
    assert list(seq.frames) == sorted(int(p.stem) for p in (folder / "velodyne").glob("*.bin"))
    # Velodyne poses computed here from the text files: inv(Tr) @ P_i @ Tr (KITTI's calib and camera-0 poses).
    tr = np.eye(4)
    tr[:3] = np.array([line.split(":")[1].split() for line in (folder / "calib.txt").read_text().splitlines()
                       if line.startswith("Tr:")][0], dtype=float).reshape(3, 4)  # fmt: skip
    cam = np.tile(np.eye(4), (len(seq), 1, 1))
    cam[:, :3] = np.loadtxt(folder / "poses.txt").reshape(-1, 3, 4)
    assert np.allclose(seq.poses, np.linalg.inv(tr) @ cam @ tr, rtol=0, atol=1e-9)
    cfg = ScanPreprocess()
    for k in (0, 9):
        scan = np.fromfile(folder / "velodyne" / f"{seq.frames[k]:06d}.bin", dtype="<f4").reshape(-1, 4)
        expected = network_candidates(finite_points(scan)[0][:, :3].astype(np.float64), cfg)
        got = seq.candidates(k)
        assert got.dtype == np.float64 and got.shape == expected.shape and len(got) > 1000
        assert np.abs(got - expected).max() <= 2.0**-24 * 40


@pytest.mark.parametrize("role,fixed", [("train", False), ("val", True)])
def test_cache_pairs_equal_the_source_pairs(mini: Path, cache: Path, role: str, fixed: bool) -> None:
    """Same pairs, exact labels, the same random samples (points within float32 rounding), in two epochs."""
    cfg = ScanPreprocess(num_points=256)
    source = [KittiSequence.open(mini, "10" if role == "train" else "02", "poses.txt")]
    a = ScanPairDataset(source, cfg, max_gap=4, seed=7, fixed=fixed)
    b = ScanPairDataset(read_scan_cache(cache).role(role), cfg, max_gap=4, seed=7, fixed=fixed)
    assert a.pairs == b.pairs and len(a) == (22 if role == "train" else 30)
    for epoch in (0, 1):
        a.set_epoch(epoch), b.set_epoch(epoch)
        for i in range(len(a)):
            x, y = a[i], b[i]
            for key in ("rotation", "translation", "euler"):
                assert torch.equal(x[key], y[key]), (i, key)
            for key in ("src", "tgt"):
                assert x[key].shape == y[key].shape == (256, 3)
                assert (x[key] - y[key]).abs().max() <= POINT_TOLERANCE, (i, key)


def test_training_from_the_cache_matches_training_from_the_scans_without_open3d(mini: Path, cache: Path, tmp_path: Path) -> None:
    """The same tiny run from the scans (here) and from the cache (in a fresh process where open3d and small_gicp
    cannot be imported, as on a host without them) gives the same validation metrics."""
    assert main(["train", "registration", "--data", f"kitti:{mini}", *SELECT, *TINY, "--out", str(tmp_path / "scans")]) == 0
    args = ["train", "registration", "--data", f"cache:{cache}", *SELECT, *TINY, "--out", str(tmp_path / "cache")]
    code = ("import sys; sys.modules['open3d'] = sys.modules['small_gicp'] = None; "
            f"from dlc_ros.cli import main; sys.exit(main({args!r}))")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    scans, cached = (json.loads((tmp_path / d / "model_card.json").read_text()) for d in ("scans", "cache"))
    assert cached["train"]["data"] == f"cache:{cache}" and cached["preprocess"] == scans["preprocess"]
    assert cached["train"]["data_source"]["data"] == f"kitti:{mini}" and "data_source" not in scans["train"]
    for key, value in scans["metrics"].items():  # inputs differ by <= POINT_TOLERANCE: the metrics agree to ~1e-6
        assert cached["metrics"][key] == pytest.approx(value, rel=1e-4), key


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--voxel-size", "0.5"], "made with voxel_size 0.8; this run asks for voxel_size 0.5"),
        (["--min-range", "2", "--ground-z", "-1.5"], "made with min_range 3.0, ground_z -1.3; this run asks for min_range 2.0, ground_z -1.5"),
        (["--val-sequences", "01"], "holds val_sequences ['02']; this run asks for val_sequences ['01']"),
    ],
)
def test_another_preprocessing_or_selection_is_refused(cache: Path, tmp_path: Path, capsys, flags: list[str], message: str) -> None:
    args = ["train", "registration", "--data", f"cache:{cache}", *SELECT, *TINY, *flags, "--out", str(tmp_path / "m")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err, err
    assert not (tmp_path / "m").exists()


def test_a_cache_does_not_mix_with_other_specs(mini: Path, cache: Path, tmp_path: Path, capsys) -> None:
    assert main(["train", "registration", "--data", f"cache:{cache}+kitti:{mini}", *SELECT, "--out", str(tmp_path / "m")]) == 2
    assert "cache:FILE stands alone" in capsys.readouterr().err


@pytest.mark.parametrize(
    "damage,message",
    [
        (lambda raw: raw[: len(raw) // 2], "truncated or corrupt"),
        (lambda raw: raw[:-100], "truncated or corrupt"),
        (lambda raw: raw[:5000] + bytes(200) + raw[5200:], "truncated or corrupt"),
        (lambda raw: b"not a cache\n", "truncated or corrupt"),
        (None, "not found"),
    ],
)
def test_a_damaged_cache_is_one_line(cache: Path, tmp_path: Path, capsys, damage, message: str) -> None:
    broken = tmp_path / "broken.npz"
    if damage is not None:
        broken.write_bytes(damage(cache.read_bytes()))
    with pytest.raises(InputError, match=message):
        read_scan_cache(broken)
    assert main(["train", "registration", "--data", f"cache:{broken}", *SELECT, "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {broken}: ") and "Traceback" not in err


def test_a_foreign_or_inconsistent_npz_is_refused(cache: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.npz"
    np.savez(other, points=np.zeros((4, 3)))
    with pytest.raises(InputError, match="not a readable scan cache"):
        read_scan_cache(other)
    with np.load(cache) as npz:
        arrays = {name: npz[name] for name in npz.files}
    newer = dict(arrays, meta=np.frombuffer(json.dumps({"format_version": 99}).encode(), dtype=np.uint8))
    with open(tmp_path / "newer.npz", "wb") as f:
        np.savez(f, **newer)
    with pytest.raises(InputError, match="scan cache format 99, expected 1"):
        read_scan_cache(tmp_path / "newer.npz")
    arrays["0/offsets"] = arrays["0/offsets"][::-1].copy()
    with open(tmp_path / "bad.npz", "wb") as f:
        np.savez(f, **arrays)
    with pytest.raises(InputError, match=r"sequence 0 \(.*10\): offsets do not index"):
        read_scan_cache(tmp_path / "bad.npz")
