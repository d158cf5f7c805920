"""dlc landscape: the task-agnostic analysis on landscapes with known answers, then a tiny registration model end
to end through the handler (single and --compare), and bad input."""

from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from dlc_core import landscape as analysis
from dlc_core.errors import InputError

N = 6  # chart dimension, as for registration
SCALE = np.array([0.2, 0.5, 1.0, 2.0, 0.1, 1.5])  # deliberately non-uniform chart units per scaled unit
TRUTH = torch.tensor([0.3, -0.2, 0.1, 0.5, -0.4, 0.05], dtype=torch.float64)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def scaled(points: torch.Tensor) -> torch.Tensor:
    """z = (p − y) / scale for stacked chart points (S, 1, n)."""
    return (points - TRUTH) / torch.as_tensor(SCALE)


def probe(radius: float = 1.0, rays: int = 64, ray_points: int = 21, grid: int = 41, dims=(1, 4), seed: int = 0):
    return analysis.make_probe(SCALE, radius, rays, ray_points, grid, dims, seed)


# --- rays and probe -------------------------------------------------------------------------------------------


def test_ray_directions_are_fixed_unit_vectors() -> None:
    a, b, c = analysis.ray_directions(64, N, 0), analysis.ray_directions(64, N, 0), analysis.ray_directions(64, N, 1)
    assert a.shape == (64, N)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, rtol=1e-12)
    assert (a > 0).any(axis=0).all() and (a < 0).any(axis=0).all()  # every coordinate is explored both ways


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(radius=0.0), "--radius must be > 0"),
        (dict(radius=-1.0), "--radius must be > 0"),
        (dict(radius=float("nan")), "--radius must be > 0"),
        (dict(rays=0), "--rays"),
        (dict(ray_points=1), "--ray-points"),
        (dict(grid=2), "--grid"),
        (dict(dims=(2, 2)), "--dims"),
        (dict(dims=(0, 6)), "--dims"),
    ],
)
def test_probe_refuses_bad_sizes(kwargs: dict, message: str) -> None:
    with pytest.raises(InputError, match=re.escape(message)):
        probe(**kwargs)


def test_parse_dims_names_aliases_indices() -> None:
    names = ("euler_z_rad", "euler_y_rad", "euler_x_rad", "t_x", "t_y", "t_z")
    assert analysis.parse_dims("euler_z_rad,t_x", names) == (0, 3)
    assert analysis.parse_dims("yaw, t_z", names, {"yaw": 0}) == (0, 5)
    assert analysis.parse_dims("1,4", names) == (1, 4)
    for bad in ("t_x", "t_x,t_x", "t_x,t_w", "0,9", "a,b,c"):
        with pytest.raises(InputError, match="--dims"):
            analysis.parse_dims(bad, names)


# --- analytic landscapes --------------------------------------------------------------------------------------

HESSIAN = torch.tensor([1.0, 3.0, 0.5, 2.0, 4.0, 0.8], dtype=torch.float64)  # diagonal, in chart units


def quadratic(points: torch.Tensor) -> torch.Tensor:
    """½ (p − y)ᵀ H (p − y): μ-strongly star-convex (indeed convex) for every μ <= min H."""
    return 0.5 * (HESSIAN * (points - TRUTH) ** 2).sum(-1)


def test_strongly_convex_quadratic_is_monotone_and_strong() -> None:
    p = probe()
    result = analysis.scan(quadratic, TRUTH, p, mu=0.9 * float(HESSIAN.min()), chunk=500)
    s = analysis.scores(result, p)
    assert s["monotone_rays"] == 1.0 and s["strong_rays"] == 1.0
    assert s["grid_minima"] == 1 and s["grid_minima_at"] == [[0.0, 0.0]]
    assert s["argmin_dist"] == 0.0 and s["loss_at_truth"] == 0.0
    assert result.ray_losses.shape == (64, 21) and result.grid_losses.shape == (41, 41)


def test_scan_sends_all_points_in_a_few_batched_calls() -> None:
    shapes = []

    def recording(points: torch.Tensor) -> torch.Tensor:
        shapes.append(tuple(points.shape))
        return quadratic(points)

    analysis.scan(recording, TRUTH, probe(), mu=0.0, chunk=1000)  # 1 + 64 * 20 + 41 * 41 = 2962 points
    assert shapes == [(1000, 1, N), (1000, 1, N), (962, 1, N)]


def test_quadratic_envelope_share_matches_rayleigh_quotients() -> None:
    """Along ray u the loss is ½ r² δᵀHδ with δ = scale ⊙ u: strong iff the Rayleigh quotient δᵀHδ/δᵀδ >= μ."""
    p = probe(rays=256)
    delta = p.directions * SCALE
    quotient = (delta**2 * HESSIAN.numpy()).sum(1) / (delta**2).sum(1)
    mu = float(np.sort(quotient)[127] + np.sort(quotient)[128]) / 2  # between two rays' quotients: none is borderline
    expected = float((quotient >= mu).mean())
    assert 0.0 < expected < 1.0
    s = analysis.scores(analysis.scan(quadratic, TRUTH, p, mu=mu), p)
    assert s["monotone_rays"] == 1.0
    assert s["strong_rays"] == expected
    assert analysis.scores(analysis.scan(quadratic, TRUTH, p, mu=1.1 * float(HESSIAN.max())), p)["strong_rays"] == 0.0


DIP_DIRECTION = np.array([0.5, -0.5, 0.5, 0.5, 0.0, 0.0])  # unit, in scaled coordinates
DIP_DISTANCE, DIP_WIDTH, DIP_HALF_ANGLE = 0.6, 0.1, math.radians(60.0)


def cone_dip(points: torch.Tensor) -> torch.Tensor:
    """|z|² minus a radial dip at |z| = d, present only inside the cone of half-angle w around a known direction."""
    z = scaled(points)
    r = z.norm(dim=-1)
    cos = (z @ torch.as_tensor(DIP_DIRECTION)) / r.clamp_min(1e-300)
    inside = (cos > math.cos(DIP_HALF_ANGLE)).double()
    return r**2 - inside * torch.exp(-((r - DIP_DISTANCE) ** 2) / (2 * DIP_WIDTH**2))


def test_dip_in_a_cone_makes_exactly_the_rays_inside_it_non_monotone() -> None:
    p = probe(rays=512)
    inside = p.directions @ DIP_DIRECTION > math.cos(DIP_HALF_ANGLE)  # the exact answer, from the geometry alone
    assert 10 <= inside.sum() <= 500
    result = analysis.scan(cone_dip, TRUTH, p, mu=0.0)
    np.testing.assert_array_equal(result.monotone, ~inside)
    assert analysis.scores(result, p)["monotone_rays"] == float((~inside).mean())


DIP_AT = np.array([0.6, -0.4])  # a grid node (spacing 0.05 for R = 1, G = 41) in scaled units along dims (1, 4)


def gaussian_dip(points: torch.Tensor) -> torch.Tensor:
    """|z|² minus a deep Gaussian dip centred at a known point of the (dims 1, 4) plane: a second, lower minimum."""
    z = scaled(points)
    centre = torch.zeros(N, dtype=torch.float64)
    centre[1], centre[4] = float(DIP_AT[0]), float(DIP_AT[1])
    return (z**2).sum(-1) - torch.exp(-((z - centre) ** 2).sum(-1) / (2 * DIP_WIDTH**2))


def test_second_minimum_is_found_on_the_grid_at_its_place() -> None:
    p = probe()
    result = analysis.scan(gaussian_dip, TRUTH, p, mu=0.0)
    s = analysis.scores(result, p)
    assert s["grid_minima"] == 2
    dip_offset = DIP_AT * SCALE[[1, 4]]  # chart units
    np.testing.assert_allclose(s["grid_minima_at"][0], dip_offset, atol=1e-12)  # the lower one first
    np.testing.assert_allclose(s["grid_minima_at"][1], [0.0, 0.0], atol=1e-12)
    assert s["argmin_dist"] == pytest.approx(float(np.hypot(*dip_offset)))
    assert result.minima[0] == (32, 12) and result.argmin == (32, 12)


def test_rounding_sized_wiggles_are_tolerated_but_real_ones_are_not() -> None:
    """A flat landscape is monotone (never decreasing); wiggles below the tolerance (1e-5 of max |L|) keep it so."""

    def wiggly(amplitude: float):
        return lambda points: 1.0 + amplitude * torch.sin(400.0 * scaled(points).norm(dim=-1))

    p = probe()
    assert analysis.scores(analysis.scan(wiggly(1e-8), TRUTH, p, mu=0.0), p)["monotone_rays"] == 1.0
    assert analysis.scores(analysis.scan(wiggly(1e-2), TRUTH, p, mu=0.0), p)["monotone_rays"] < 0.5


def test_grid_minima_plateaus_and_borders() -> None:
    flat = np.zeros((5, 5))
    assert len(analysis.grid_minima(flat, 0.0)) == 1  # one plateau, nothing lower around it
    bowl = np.add.outer(np.arange(5.0) - 2, np.zeros(5)) ** 2 + np.add.outer(np.zeros(5), np.arange(5.0) - 2) ** 2
    bowl[2, 2] = bowl[2, 3] = bowl[1, 2] = -1.0  # a minimal plateau of three cells counts once
    assert analysis.grid_minima(bowl, 1e-9) == [(1, 2)]  # its first lowest cell
    shelf = bowl.copy()
    shelf[2, 4] = shelf[3, 4] = -1.0  # the plateau now leads to a lower cell: not a minimum any more
    shelf[4, 4] = -2.0  # ... which is the one minimum, on the border
    assert analysis.grid_minima(shelf, 1e-9) == [(4, 4)]
    two = np.fromfunction(
        lambda i, j: np.minimum((i - 1) ** 2 + (j - 1) ** 2, (i - 5) ** 2 + (j - 5) ** 2 - 0.5), (7, 7)
    )
    assert analysis.grid_minima(two, 0.0) == [(5, 5), (1, 1)]


def test_summary_mean_and_median() -> None:
    rows = [
        dict(monotone_rays=r, strong_rays=r / 2, grid_minima=k, argmin_dist=d)
        for r, k, d in [(1.0, 1, 0.0), (0.5, 3, 0.2), (0.0, 2, 0.1)]
    ]
    summary = analysis.summarise(rows)
    assert summary["monotone_rays"] == {"mean": 0.5, "median": 0.5}
    assert summary["grid_minima"] == {"mean": 2.0, "median": 2.0}
    assert summary["argmin_dist"]["median"] == 0.1


# --- a tiny registration model end to end -----------------------------------------------------------------------

TINY = ["train", "registration", "--backbone", "dcp-pointnet", "--emb-dims", "32", "--ff-dims", "64", "--n-heads",
        "2", "--num-points", "64", "--batch-size", "8", "--passes", "2", "--epochs", "1", "--steps", "2", "--device",
        "cpu"]  # fmt: skip


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> tuple[Path, Path]:
    """A DLC model trained for two steps with the CLI, and a no-DLC twin: the same weights under a no-DLC card (a
    second training run would cost the loaded machine another ~15 s and test nothing more here)."""
    from dlc_ros.cli import main

    root = tmp_path_factory.mktemp("landscape_models")
    assert main([*TINY, "--out", str(root / "dlc")]) == 0
    return root / "dlc", copy_model(root / "dlc", root / "nodlc", dlc={"enabled": False})


def copy_model(src: Path, dst: Path, **card_changes) -> Path:
    """A copy of a model folder with some top-level card entries replaced (the weights' sha256 still matches)."""
    dst.mkdir()
    card = json.loads((src / "model_card.json").read_text())
    (dst / "model_card.json").write_text(json.dumps({**card, **card_changes}))
    (dst / "model.pt").write_bytes((src / "model.pt").read_bytes())
    return dst


def namespace(out: Path, model: Path, **overrides) -> argparse.Namespace:
    """The parsed flags of dlc landscape (the CLI's defaults, with small sizes so that the test is quick)."""
    values = dict(model=str(model), compare=None, data="shapes", protocol="clean", samples=2, seed=0, radius=3.0,
                  rays=8, ray_points=5, grid=9, dims=None, landscape=None, mu=None, chunk=None, device="cpu",
                  out=str(out), json=None, command="dlc landscape (test)")  # fmt: skip
    return argparse.Namespace(**{**values, **overrides})


def assert_png(path: str) -> None:
    from PIL import Image

    assert Path(path).read_bytes()[:8] == PNG_MAGIC
    with Image.open(path) as image:
        image.verify()


def test_handler_single_model(tiny_models, tmp_path: Path) -> None:
    from training.landscape import run

    dlc, _ = tiny_models
    assert run(namespace(tmp_path / "out", dlc)) == 0
    result = json.loads((tmp_path / "out" / "landscape.json").read_text())
    for key in ("task", "model", "compare", "data", "command", "samples", "sample_indices", "probe", "models", "pngs",
                "time_ms", "peak_rss_mb", "device", "machine", "date"):  # fmt: skip
        assert key in result, key
    assert result["samples"] == 2 and len(result["pngs"]) == 2
    probe_card = result["probe"]
    assert probe_card["dims"] == ["euler_z_rad", "t_x"] and probe_card["grid"] == 9 and probe_card["rays"] == 8
    assert probe_card["mu"] == 0.1 and "dlc.mu" in probe_card["mu_source"]
    assert probe_card["scale"]["euler_z_rad"] == pytest.approx(math.radians(10.0)) and probe_card["scale"]["t_x"] == 0.1
    (entry,) = result["models"]
    assert entry["dlc"] is True and entry["landscape"] == "label" and entry["landscape_source"] == "card"
    assert entry["passes"] == 2
    assert set(entry["summary"]) == {"monotone_rays", "strong_rays", "grid_minima", "argmin_dist"}
    assert [row["index"] for row in entry["per_sample"]] == result["sample_indices"]
    for row in entry["per_sample"]:
        assert 0.0 <= row["strong_rays"] <= row["monotone_rays"] <= 1.0
        assert row["grid_minima"] >= 1 and row["argmin_dist"] >= 0.0
        assert len(row["grid_minima_at"]) == row["grid_minima"]
    for png in result["pngs"]:
        assert_png(png)


def test_handler_uses_the_landscape_the_dlc_loss_trains(tiny_models, tmp_path: Path) -> None:
    """L(y) in the JSON equals make_landscape(...) at the truth, built here as dlc_core.dlc_loss's caller builds it."""
    from dlc_core.data.registration_data import evaluation_set, parse_spec
    from dlc_core.models import load_registration_model
    from dlc_core.registration_objective import chart_point, make_landscape
    from training.landscape import run

    dlc, _ = tiny_models
    assert run(namespace(tmp_path, dlc, samples=1, landscape="procrustes", json=str(tmp_path / "l.json"))) == 0
    result = json.loads((tmp_path / "l.json").read_text())
    index = result["sample_indices"][0]
    model, card = load_registration_model(dlc, torch.device("cpu"))
    pair = evaluation_set(parse_spec("shapes", ("shapes",)), "clean", card["preprocess"]["num_points"], 0)[index]
    src, tgt = pair["src"][None], pair["tgt"][None]
    with torch.no_grad():
        passes = model(src, tgt, passes=card["train"]["passes"])
        landscape = make_landscape(
            "procrustes", model, src, tgt, passes, pair["rotation"][None], pair["translation"][None]
        )
        truth = chart_point(pair["euler"], pair["translation"])[None, None]
        expected = float(landscape(truth))
    (entry,) = result["models"]
    assert entry["landscape"] == "procrustes" and entry["landscape_source"] == "flag"
    assert entry["per_sample"][0]["loss_at_truth"] == pytest.approx(expected, rel=1e-6)


def test_handler_compare_doubles_the_entries(tiny_models, tmp_path: Path) -> None:
    from training.landscape import run

    dlc, nodlc = tiny_models
    out = tmp_path / "cmp"
    small = dict(grid=5, rays=4, ray_points=3, chunk=8)  # rerun: one network pass per point, 8 points per call
    assert run(namespace(out, nodlc, compare=str(dlc), landscape="rerun", dims="yaw,t_y", **small)) == 0
    result = json.loads((out / "landscape.json").read_text())
    assert result["compare"] == str(dlc)
    first, second = result["models"]
    assert (first["dlc"], second["dlc"]) == (False, True)
    assert first["landscape"] == second["landscape"] == "rerun"
    assert (
        [r["index"] for r in first["per_sample"]]
        == [r["index"] for r in second["per_sample"]]
        == result["sample_indices"]
    )
    assert "dlc.mu" in result["probe"]["mu_source"] and str(dlc) in result["probe"]["scale_source"]  # the DLC card's
    assert result["probe"]["dims"] == ["euler_z_rad", "t_y"]
    assert len(result["pngs"]) == result["samples"] == 2
    for png in result["pngs"]:
        assert_png(png)
    for ours, theirs in zip(
        first["per_sample"], second["per_sample"], strict=True
    ):  # same weights, samples, rays and grid
        assert {k: v for k, v in ours.items() if k != "time_s"} == {k: v for k, v in theirs.items() if k != "time_s"}


def test_no_dlc_model_alone_uses_the_defaults(tiny_models, tmp_path: Path) -> None:
    from training.landscape import run

    _, nodlc = tiny_models
    assert run(namespace(tmp_path, nodlc, samples=1, grid=3, rays=2, ray_points=2, mu=0.5)) == 0
    result = json.loads((tmp_path / "landscape.json").read_text())
    assert result["models"][0]["landscape"] == "label" and result["models"][0]["landscape_source"] == "default"
    assert (result["probe"]["mu"], result["probe"]["mu_source"]) == (0.5, "flag")
    assert result["probe"]["scale_source"].startswith("trainer defaults")


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(radius=0.0), "--radius must be > 0"),
        (dict(radius=-2.0), "--radius must be > 0"),
        (dict(landscape="bogus"), "--landscape must be one of"),
        (dict(dims="yaw,yaw"), "--dims"),
        (dict(data="nope"), "unknown kind"),
        (dict(samples=0), "--samples"),
        (dict(mu=-1.0), "--mu"),
        (dict(model="/nonexistent/model"), "no such model folder"),
    ],
)
def test_handler_bad_input(tiny_models, tmp_path: Path, overrides: dict, message: str) -> None:
    from training.landscape import run

    with pytest.raises(InputError, match=re.escape(message)):
        run(namespace(tmp_path, **{"model": tiny_models[0], **overrides}))
    assert not (tmp_path / "landscape.json").exists()


@pytest.mark.parametrize("task", ["lstm", "teleportation"])
def test_handler_refuses_a_task_without_a_landscape(tiny_models, tmp_path: Path, task: str) -> None:
    from training.landscape import run

    folder = copy_model(tiny_models[0], tmp_path / "m", task=task)
    with pytest.raises(InputError, match=f"task '{task}' has no landscape"):
        run(namespace(tmp_path / "out", folder))
    with pytest.raises(InputError, match="has no landscape"):
        run(namespace(tmp_path / "out", tiny_models[0], compare=str(folder)))
