"""Homography: geometry against OpenCV, the pair generator's exact labels, the DeepLK-format reader on the shared
fixture (templates rebuilt from the labels), the LK layer recovering a known homography, the DLKFM map and the two
training objectives against hand computations, SIFT + RANSAC, and the CLI on a tiny run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage

from dlc_core.checkpoint import save_checkpoint
from dlc_core.dlc_loss import DLCConfig, DLCLoss
from dlc_core.errors import InputError
from dlc_core.homography.geometry import (
    NOMINAL_CORNERS,
    TEMPLATE_CORNERS,
    corner_error,
    corners_of,
    homography_from_corners,
    project,
    rescale,
    success_rates,
)
from dlc_core.homography.lk import inverse_compositional, lk_loss, warp
from dlc_core.homography.model import HomographyConfig, HomographyModel, RegressionNet, dlkfm, load_homography_model
from dlc_core.homography.objective import EntryChart, deeplk_convex_loss
from dlc_core.homography.pairs import (DevicePairs, PairDataset, make_pair, map_like, random_window, read_dlk, read_grey, resized, sample_template,
                                       split_photos)
from dlc_core.homography.sift import nominal, sift_homography
from dlc_ros.cli import main
from training.homography import batches

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def homography_data(shared_data: Path) -> Path:
    return shared_data / "homography"


@pytest.fixture(scope="module")
def coffee(homography_data: Path) -> np.ndarray:
    return read_grey(homography_data / "photos" / "coffee.jpg")


def h_of(corners: np.ndarray) -> torch.Tensor:
    return homography_from_corners(torch.as_tensor(np.asarray(corners, np.float64)[None]))


# ---------------------------------------------------------------- geometry and data


def test_dlt_matches_opencv_and_maps_the_corners() -> None:
    import cv2

    corners = np.array([[53, 60], [161, 30], [153, 183], [54, 168]], np.float64)
    h = h_of(corners)
    expected, _ = cv2.findHomography(TEMPLATE_CORNERS, corners, 0)
    np.testing.assert_allclose(h[0].numpy(), expected, rtol=1e-9, atol=1e-12)
    assert corner_error(h, torch.as_tensor(corners[None])).item() < 1e-9
    half = rescale(h, 0.5)  # the same map on half-size images
    point = torch.tensor([[[40.0, 70.0]]], dtype=torch.float64)
    np.testing.assert_allclose(project(half, point / 2).numpy() * 2, project(h, point).numpy(), rtol=1e-12)


@pytest.mark.parametrize("augment", [False, True])
def test_generated_labels_map_the_template_corners_exactly(coffee: np.ndarray, augment: bool) -> None:
    for seed in range(5):
        pair = make_pair(coffee, np.random.default_rng(seed), augment=augment)
        x, t, c = pair["input"], pair["template"], pair["corners"].astype(int)
        assert x.shape == (192, 192) and t.shape == (128, 128)
        assert ((c - NOMINAL_CORNERS >= -32) & (c - NOMINAL_CORNERS <= 31)).all()
        # Integer corners: the template's corner pixels are the input's pixels at the label, exactly.
        for (row, col), (u, v) in zip([(0, 0), (0, 127), (127, 127), (127, 0)], c):
            assert t[row, col] == pytest.approx(x[v, u], abs=1e-6)
        assert corner_error(torch.as_tensor(pair["H"])[None], torch.as_tensor(c[None], dtype=torch.float64)).item() < 1e-9


def test_augmented_windows_are_parts_of_the_photo_and_vary() -> None:
    photo = np.arange(60 * 80, dtype=np.float32).reshape(60, 80)  # every pixel value tells its position
    shapes, mirrored = set(), 0
    for seed in range(40):
        w = random_window(photo, np.random.default_rng(seed))
        assert 30 <= w.shape[0] <= 60 and 40 <= w.shape[1] <= 80
        r0, c0 = divmod(int(min(w[0, 0], w[0, -1])), 80)
        flipped = w[0, 0] > w[0, -1]
        window = photo[r0 : r0 + w.shape[0], c0 : c0 + w.shape[1]]
        np.testing.assert_array_equal(w, window[:, ::-1] if flipped else window)
        shapes.add(w.shape)
        mirrored += flipped
    assert len(shapes) > 20 and 8 <= mirrored <= 32
    # Without augmentation (evaluation) the input is a crop of the whole photo resized, at the first two draws.
    image = np.random.default_rng(0).random((400, 600)).astype(np.float32)
    rng = np.random.default_rng(7)
    r0, c0 = rng.integers(0, 240 - 192 + 1), rng.integers(0, 320 - 192 + 1)
    pair = make_pair(image, np.random.default_rng(7), augment=False)
    np.testing.assert_array_equal(pair["input"], resized(image)[r0 : r0 + 192, c0 : c0 + 192])


def test_worker_processes_make_the_same_training_batches_as_the_trainer_itself(homography_data: Path) -> None:
    train, _ = split_photos(homography_data / "photos")
    data = PairDataset([read_grey(p) for p in train[-2:]], 4, seed=3, augment=True)
    inline, forked = list(batches(data, 2, 1, workers=0)), list(batches(data, 2, 1, workers=2))
    assert len(inline) == len(forked) == 2
    for a, b in zip(inline, forked):
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(next(iter(batches(data, 2, 2, workers=0)))["input"], inline[0]["input"])  # a new epoch


def test_multimodal_pairs_keep_the_geometry(coffee: np.ndarray) -> None:
    a = make_pair(coffee, np.random.default_rng(3))
    b = make_pair(coffee, np.random.default_rng(3), multimodal=True)
    np.testing.assert_array_equal(a["corners"], b["corners"])
    np.testing.assert_allclose(b["template"], sample_template(map_like(a["input"]), a["H"]), atol=1e-6)
    assert np.abs(a["template"] - b["template"]).mean() > 0.2


def test_split_is_by_source_image_with_the_drone_survey_together(homography_data: Path) -> None:
    train, test = split_photos(homography_data / "photos")
    assert len(train) + len(test) == 16 and not {p.name for p in train} & {p.name for p in test}
    aerial = {p.name for p in train + test if p.name.startswith("aerial_brighton")}
    assert len(aerial) == 7 and (aerial <= {p.name for p in train} or aerial <= {p.name for p in test})
    assert {p.stem for p in test} == {"chelsea", "flower", "grace_hopper", "rocket"}


def test_deeplk_reader_on_the_shared_fixture(homography_data: Path) -> None:
    root = homography_data / "dlk_format_fixture"
    manifest = json.loads((root / "fixture_manifest.json").read_text())
    for split, names in (("train2014", ["aerial_brighton_dji_0019", "aerial_brighton_dji_0025", "coffee"]),
                         ("val2014", ["aerial_brighton_dji_0022", "aerial_brighton_dji_0033", "china"])):  # fmt: skip
        samples = read_dlk(root, split)
        assert [s.name for s in samples] == names
        for s in samples:
            h = h_of(s.corners)[0].numpy()
            rebuilt, nominal_guess = sample_template(s.input, h), sample_template(s.input, nominal())
            assert np.abs(rebuilt - s.template).mean() * 255 < 3.0  # JPEG noise (quality 95)
            assert np.abs(nominal_guess - s.template).mean() * 255 > 20.0
    first = read_dlk(root, "train2014")[0]
    # The label file lists TL, TR, BL, BR; the reader returns TL, TR, BR, BL (README of the fixture).
    np.testing.assert_array_equal(first.corners, [[53, 60], [161, 30], [153, 183], [54, 168]])
    # The fixture's own record of H (template -> input) agrees with the homography the reader's corners give.
    recorded = next(m for m in manifest["samples"] if m["name"] == first.name)
    np.testing.assert_allclose(np.array(recorded["H_template_to_input"]), h_of(first.corners)[0].numpy(), rtol=1e-8, atol=1e-9)


def test_deeplk_reader_refuses_damaged_folders(homography_data: Path, tmp_path: Path) -> None:
    import shutil

    root = tmp_path / "dlk"
    shutil.copytree(homography_data / "dlk_format_fixture", root)
    (root / "val2014_label" / "china_label.txt").write_text('{"location": [')
    with pytest.raises(InputError, match="china_label.txt: not a DeepLK label file"):
        read_dlk(root, "val2014")
    (root / "val2014_label" / "china_label.txt").unlink()
    with pytest.raises(InputError, match="missing .*china_label.txt"):
        read_dlk(root, "val2014")
    with pytest.raises(InputError, match="no test2014_input/ images"):
        read_dlk(root, "test2014")


# ---------------------------------------------------------------- LK, DLKFM and the objectives


def test_lk_recovers_a_known_homography_from_a_small_perturbation(coffee: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    pair = make_pair(coffee, rng)
    image = torch.tensor(ndimage.gaussian_filter(pair["input"], 2.0))[None, None]
    h_true = torch.tensor(pair["H"])[None]
    template = warp(image.double(), h_true, (128, 128)).float()
    truth = torch.as_tensor(pair["corners"], dtype=torch.float64)[None]
    start = h_of(pair["corners"] + rng.normal(0, 3, (4, 2)))
    assert corner_error(start, truth).item() > 3.0
    result = inverse_compositional(template, image, start, max_iters=100, stop_px=1e-4)
    assert corner_error(result.h, truth).item() < 0.01
    assert result.loss_end.item() < 1e-3 * result.loss_start.item()
    # another exposure (gain 0.7, offset 0.2): the standardised comparison still lands, the plain one does not
    exposed = 0.7 * template + 0.2
    blind = inverse_compositional(exposed, image, start, max_iters=100, stop_px=1e-4, standardise=True)
    assert corner_error(blind.h, truth).item() < 0.01
    assert corner_error(inverse_compositional(exposed, image, start, max_iters=100, stop_px=1e-4).h, truth).item() > 0.1


def test_regression_is_blind_to_an_exposure_change_and_old_cards_keep_their_inputs(coffee: np.ndarray) -> None:
    pair = make_pair(coffee, np.random.default_rng(3))
    image, template = torch.tensor(pair["input"])[None, None], torch.tensor(pair["template"])[None, None]
    moved = {}
    for standardise in (True, False):
        torch.manual_seed(0)
        net = RegressionNet((8, 8), grid=2, hidden=16, norm=True, standardise=standardise).eval()
        torch.nn.init.normal_(net.head.weight)  # the head starts at zero: every input would give the nominal corners
        with torch.no_grad():
            moved[standardise] = (net.corners(image, template) - net.corners(0.6 * image + 0.3, 1.3 * template - 0.1)).abs().max()
    assert moved[True] < 1e-3
    assert moved[False] > 0.1
    # cards from before the standardisation (the learned-feature models') load without it, as they were trained
    legacy = json.loads((REPO / "models" / "homography_nodlc" / "model_card.json").read_text())["config"]
    assert "regression_standardise" not in legacy
    assert HomographyConfig.from_card(legacy).regression_standardise is False
    assert HomographyConfig().regression_standardise is True


def test_dlkfm_matches_the_formula_written_out() -> None:
    torch.manual_seed(0)
    f = torch.randn(1, 4, 5, 6, dtype=torch.float64)
    padded = np.pad(f[0].numpy(), ((0, 0), (1, 1), (1, 1)))
    for r, c in np.ndindex(5, 6):  # every pixel, the border ones (zero padding) included
        p = padded[:, r : r + 3, c : c + 3].reshape(4, 9)
        p = p - p.mean(0, keepdims=True)
        g = p.T @ p
        rows = g.sum(1)
        assert dlkfm(f, eps=0.0)[0, 0, r, c].item() == pytest.approx((rows.max() + rows.min()) / 2 / np.trace(g), rel=1e-9)


def test_entry_chart_perturbs_the_eight_free_entries() -> None:
    chart = EntryChart()
    h = h_of([[53, 60], [161, 30], [153, 183], [54, 168]]).repeat(5, 1, 1)  # every entry non-zero
    r = chart.sample(h, 4, torch.Generator().manual_seed(0))
    assert r.shape == (4, 5, 8) and (r.abs() >= 0.02).all() and (r.abs() <= 1 / 12).all()
    moved = chart.retract(h, r)
    assert torch.equal(moved[..., 2, 2], h[..., 2, 2].expand(4, 5))
    np.testing.assert_allclose((moved / h - 1).flatten(-2)[..., :8].numpy(), r.numpy(), atol=1e-12)


def test_both_objectives_train_the_feature_pyramids(coffee: np.ndarray) -> None:
    """The DLC hinges and DeepLK's convex loss both reach the feature networks through the LK landscape, and
    DeepLK's terms equal a hand computation on the same noise."""
    torch.manual_seed(0)
    model = HomographyModel(HomographyConfig(channels=4))
    pair = make_pair(coffee, np.random.default_rng(1))
    image, template = torch.as_tensor(pair["input"])[None, None], torch.as_tensor(pair["template"])[None, None]
    h = torch.as_tensor(pair["H"])[None]
    maps = model.pyramids(image, template)

    def landscape(points: torch.Tensor) -> torch.Tensor:
        return model.landscape(*maps, points)

    terms = DLCLoss(DLCConfig(K=2)).double()(landscape, h, EntryChart(), torch.Generator().manual_seed(5))
    convex = deeplk_convex_loss(landscape, h, EntryChart(), 2, torch.Generator().manual_seed(5))
    r = EntryChart().sample(h, 2, torch.Generator().manual_seed(5))
    with torch.no_grad():
        at = [landscape(EntryChart().retract(h, s * r)) for s in (0.0, 1.0, 2.0, -1.0, -2.0)]
    d2 = r.pow(2).sum(-1)
    by_hand = (torch.relu(at[0] - at[1] + d2) + torch.relu(at[1] - at[2] + 3 * d2)
               + torch.relu(at[0] - at[3] + d2) + torch.relu(at[3] - at[4] + 3 * d2)).mean()  # fmt: skip
    assert convex.item() == pytest.approx(by_hand.item(), rel=1e-9)
    (terms.landscape_at_truth.mean() + terms.loss + convex).backward()
    for net in (model.input_features, model.template_features):
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
    assert lk_loss(maps[1][0], maps[0][0], h).shape == (1,)


def test_sift_baseline(homography_data: Path) -> None:
    samples = read_dlk(homography_data / "dlk_format_fixture", "val2014")
    for s in samples:
        truth = torch.as_tensor(s.corners, dtype=torch.float64)[None]
        pe = corner_error(torch.as_tensor(sift_homography(s.template, s.input))[None], truth).item()
        assert pe < corner_error(torch.as_tensor(nominal())[None], truth).item()
    blank = np.zeros((128, 128), np.float32)
    np.testing.assert_array_equal(sift_homography(blank, samples[0].input), nominal())


def test_success_rates() -> None:
    sr = success_rates(np.array([0.05, 0.7, 2.0, 4.0, np.nan]))
    assert sr["0.1"] == 20.0 and sr["1"] == 40.0 and sr["3"] == 60.0 and sr["20"] == 80.0


def test_photometric_pairs_keep_the_geometry_and_change_the_exposure(homography_data: Path) -> None:
    grey = read_grey(homography_data / "photos" / "chelsea.jpg")
    plain, changed = (make_pair(grey, np.random.default_rng((3, 1)), photometric=p) for p in (False, True))
    np.testing.assert_array_equal(plain["corners"], changed["corners"])
    np.testing.assert_array_equal(plain["H"], changed["H"])
    noise = changed["input"] - plain["input"]
    assert 0.01 < float(noise[(plain["input"] > 0.1) & (plain["input"] < 0.9)].std()) < 0.03  # σ 0.02, unclipped part
    gain, offset = np.polyfit(plain["template"].ravel(), changed["template"].ravel(), 1)  # template = gain·t + offset
    assert 0.75 < gain < 1.25 and -0.15 < offset < 0.15 and abs(gain - 1) + abs(offset) > 1e-3


def test_device_pairs_are_labelled_exactly_and_repeat_by_epoch(homography_data: Path) -> None:
    """Pairs made with torch (for a GPU) follow make_pair's protocol: the template is the input sampled at H (checked
    with make_pair's own sampler), the corners are H's, and a (seed, epoch) gives the same batch again."""
    photos = sorted((homography_data / "photos").glob("*.jpg"))[:3]
    pairs = DevicePairs([read_grey(p) for p in photos], seed=5, augment=True, device=torch.device("cpu"))
    first, again, other = (next(iter(pairs.epoch(e, 1, 4))) for e in (0, 0, 1))
    for i in range(4):
        h = first["H"][i].double()
        np.testing.assert_allclose(first["template"][i].numpy(), sample_template(first["input"][i].numpy(), h.numpy()), atol=1e-5)
        np.testing.assert_allclose(corners_of(h).numpy(), first["corners"][i].numpy(), atol=1e-3)
        assert (first["corners"][i] - torch.as_tensor(NOMINAL_CORNERS)).abs().max() <= 32
    assert all(torch.equal(first[k], again[k]) for k in first) and not torch.equal(first["input"], other["input"])


# ---------------------------------------------------------------- CLI


def test_cli_trains_evaluates_and_refuses(homography_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    photos = homography_data / "photos"
    out = tmp_path / "h"
    tiny = ["train", "homography", "--images", str(photos), "--out", str(out), "--regression-steps", "2",
            "--batch-size", "2", "--pairs-per-epoch", "4", "--channels", "4"]  # fmt: skip
    assert main([*tiny, "--steps", "1"]) == 0
    card = json.loads((out / "model_card.json").read_text())
    assert card["task"] == "homography" and card["train"]["done_steps"] == 3
    assert main([*tiny, "--steps", "2", "--resume"]) == 0  # one more feature step
    on_device = [*tiny[:5], str(tmp_path / "on_device"), *tiny[6:], "--steps", "1", "--pairs-on-device"]
    assert main(on_device) == 0
    assert json.loads((tmp_path / "on_device" / "model_card.json").read_text())["train"]["pairs_on_device"] is True
    capsys.readouterr()
    assert main([*on_device, "--multimodal"]) == 2
    assert "--pairs-on-device makes single-modal pairs only" in capsys.readouterr().err
    assert json.loads((out / "model_card.json").read_text())["train"]["done_steps"] == 4
    assert set(card["train"]["held_out_photos"]) == {"chelsea.jpg", "flower.jpg", "grace_hopper.jpg", "rocket.jpg"}
    tuned = tmp_path / "tuned"
    fine_tune = lambda folder, channels: ["train", "homography", "--images", str(photos), "--out", str(folder), "--init",
                                          str(out), "--regression-steps", "0", "--steps", "1", "--batch-size", "2",
                                          "--pairs-per-epoch", "4", "--channels", channels]  # noqa: E731  # fmt: skip
    assert main(fine_tune(tuned, "4")) == 0
    tuned_card = json.loads((tuned / "model_card.json").read_text())
    assert tuned_card["train"]["init"]["sha256"] == json.loads((out / "model_card.json").read_text())["sha256"]
    before, after = torch.load(out / "model.pt"), torch.load(tuned / "model.pt")
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("regression."))  # stage 1 skipped
    assert not all(torch.equal(before[k], after[k]) for k in before if k.startswith("template_features."))
    capsys.readouterr()
    assert main(fine_tune(tmp_path / "x", "8")) == 2
    assert "its pyramids have 4 channels, --channels is 8" in capsys.readouterr().err
    assert main([*fine_tune(tmp_path / "x", "4"), "--steps", "0"]) == 2
    assert "--regression-steps and --steps are both 0: nothing to train" in capsys.readouterr().err
    # composition: the tuned run's pyramids with the first run's regression, nothing trained further
    composed = tmp_path / "composed"
    assert main([*fine_tune(composed, "4"), "--init", str(tuned), "--regression-from", str(out), "--steps", "0"]) == 0
    weights, card = torch.load(composed / "model.pt"), json.loads((composed / "model_card.json").read_text())
    donor = torch.load(out / "model.pt")
    assert all(torch.equal(weights[k], (donor if k.startswith("regression.") else after)[k]) for k in weights)
    assert card["train"]["regression_from"]["sha256"] == json.loads((out / "model_card.json").read_text())["sha256"]
    assert card["train"]["init"]["sha256"] == json.loads((tuned / "model_card.json").read_text())["sha256"]
    assert card["train"]["done_steps"] == 0
    # grey-level LK: the first run's regression, nothing trained; the maps LK aligns are the images averaged down
    grey = tmp_path / "grey"
    assert main([*tiny[:5], str(grey), *tiny[6:8], "--regression-from", str(out), "--features", "intensity",
                 "--regression-steps", "0", "--steps", "0"]) == 0  # fmt: skip
    grey_model, grey_card = load_homography_model(grey, torch.device("cpu"))
    assert grey_card["config"]["features"] == "intensity" and grey_card["config"]["channels"] == 16
    assert grey_card["config"]["regression_standardise"] is True  # a new regression's inputs, kept by the composition
    # a regression trained before the standardisation keeps its inputs when composed, unless asked to change them
    for flag, expected in (([], False), (["--standardise-regression"], True)):
        legacy = tmp_path / f"legacy{len(flag)}"
        assert main([*tiny[:5], str(legacy), *tiny[6:8], "--regression-from", str(REPO / "models" / "homography_nodlc"),
                     "--features", "intensity", "--regression-steps", "0", "--steps", "0", *flag]) == 0  # fmt: skip
        legacy_model, legacy_card = load_homography_model(legacy, torch.device("cpu"))
        assert legacy_card["config"]["regression_standardise"] is expected and legacy_model.regression.standardise is expected
    image = torch.rand(1, 1, 192, 192)
    maps, _ = grey_model.pyramids(image, torch.rand(1, 1, 128, 128))
    assert torch.allclose(maps[2][0, 0, 5, 7], image[0, 0, 20:24, 28:32].mean())  # level 3: 4x4 means
    capsys.readouterr()
    assert main([*tiny[:5], str(tmp_path / "x"), *tiny[6:], "--features", "intensity", "--steps", "3"]) == 2
    assert "--features intensity has no feature pyramids to train: use --steps 0" in capsys.readouterr().err
    other = HomographyModel(HomographyConfig(channels=4, regression_grid=1, regression_hidden=0))  # the first head
    save_checkpoint(tmp_path / "other", other.state_dict(), {**card, "config": other.config.card()})
    capsys.readouterr()
    assert main([*fine_tune(tmp_path / "x", "4"), "--regression-from", str(tmp_path / "other")]) == 2
    assert "its regression network ((32, 64, 128, 128), 1, 0, True) differs from this model's ((32, 64, 128, 128), 4, 256, True)" in capsys.readouterr().err
    result_path = tmp_path / "eval.json"
    assert main(["eval", "homography", "--model", str(out), "--images", str(homography_data / "dlk_format_fixture"),
                 "--json", str(result_path)]) == 0  # fmt: skip
    result = json.loads(result_path.read_text())
    assert result["pairs"] == 3 and set(result["sr"]) == {"0.1", "0.5", "1", "3", "5", "10", "20"}
    assert {"pe_mean", "pe_median", "lk_diverged_rate", "time_ms", "peak_rss_mb", "device"} <= set(result)
    # the regression's own corner error, recomputed here from the fixture's labels
    trained, _ = load_homography_model(out, torch.device("cpu"))
    samples = read_dlk(homography_data / "dlk_format_fixture", "val2014")
    with torch.no_grad():
        guesses = [trained.regression.corners(torch.as_tensor(x.input)[None, None], torch.as_tensor(x.template)[None, None]) for x in samples]
    errors = [np.linalg.norm(g[0].double().numpy() - x.corners, axis=1).mean() for g, x in zip(guesses, samples)]
    assert result["pe_regression_median"] == pytest.approx(np.median(errors), rel=1e-5)
    proc = subprocess.run([sys.executable, "-m", "dlc_ros.cli", "eval", "registration", "--model", str(out)],
                          capture_output=True, text=True, cwd=REPO)  # fmt: skip
    assert proc.returncode == 2 and "is a 'homography' model, expected a 'registration' model" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "dlc_ros.cli", "eval", "homography", "--images", str(photos)],
                          capture_output=True, text=True, cwd=REPO)  # fmt: skip
    assert proc.returncode == 2 and proc.stderr.strip() == "error: --method model needs --model DIR (or use --method sift)"


def test_lk_divergence_is_caught_without_ground_truth(monkeypatch: pytest.MonkeyPatch) -> None:
    """A level whose LK result throws the template out of the input keeps the earlier estimate and is flagged."""
    from dlc_core.homography import model as model_module
    from dlc_core.homography.lk import LKResult

    def runaway(template, image, h0, max_iters, stop_px, standardise):  # lower LK loss, but corners far outside the input
        far = h0.clone()
        far[:, :2, 2] += 500.0
        return LKResult(far, torch.full((len(h0),), 3), torch.ones(len(h0)), torch.zeros(len(h0)))

    monkeypatch.setattr(model_module, "inverse_compositional", runaway)
    model = HomographyModel(HomographyConfig(channels=4)).eval()
    out = model(torch.rand(2, 1, 192, 192), torch.rand(2, 1, 128, 128))
    assert out["diverged"].all()
    torch.testing.assert_close(out["h"], out["h_regression"])
    assert model_module.outside(h_of(NOMINAL_CORNERS)).tolist() == [False]
