"""``dlc train registration`` and ``dlc eval registration``: DCP and DLC+DCP on object pairs.

Training follows PyTorch's own examples: a plain loop over epochs and batches. Each step runs the unrolled
model (4 weight-shared passes, loss discounted by 0.9 per pass); with DLC the hinge terms of the chosen landscape
are added (beta-weighted). The no-DLC twin is the same run without the hinges (DECISIONS.md D2). After every
epoch (and when the --steps budget ends) the model is validated on fixed pairs and written atomically with its
card, and the full training state is written for ``--resume``. The shipped model is the one at the end of the
budget, not the best on validation: with a fixed budget that is the honest comparison between arms.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from dlc_core.atomic import write_json
from dlc_core.data.kitti import KittiSequence
from dlc_core.data.registration_data import DataSpec, evaluation_set, parse_spec, parse_specs, training_sets
from dlc_core.data.scan_cache import CANDIDATE_FIELDS, cache_sequence, read_cache_source, read_scan_cache, write_scan_cache
from dlc_core.data.scan_pairs import ScanPairDataset, open_sequences
from dlc_core.dlc_loss import DLCConfig, DLCLoss
from dlc_core.errors import InputError
from dlc_core.geometry import to_matrix
from dlc_core.icp import ICPConfig, refine
from dlc_core.metrics import registration_metrics, rre_deg, rte, success_mask
from dlc_core.models import RegistrationModel, load_registration_model, registration_model
from dlc_core.models.dcp import DCPConfig
from dlc_core.models.prnet import PRNetConfig, auxiliary_losses
from dlc_core.pointcloud import check_cloud
from dlc_core.scan_preprocess import ScanPreprocess
from dlc_core.registration_objective import (
    PASS_DISCOUNT,
    chart_point,
    make_landscape,
    rigid_chart,
    task_loss,
    unrolled_loss,
)

from . import common
from .distributed import Rank, launch

TRAIN_SPECS = ("shapes", "modelnet40", "bunny", "kitti", "sim", "cache")
SCAN_SPECS = ("kitti", "sim")
# Flags that must match when a run is resumed (the rest, e.g. --epochs or --steps, may change).
RESUME_KEYS = (
    "data", "protocol", "backbone", "dlc", "batch_size", "seed", "num_points", "emb_dims", "k", "channels", "ff_dims",
    "n_heads", "passes", "lr", "lr_milestones", "weight_decay", "K", "beta", "alpha", "mu", "agg", "terms", "trainable",
    "noise_rot_deg", "noise_trans", "landscape", "kitti_sequences", "val_sequences", "poses_name", "max_gap", "yaw_deg",
    "min_range", "max_range", "ground_z", "voxel_size", "scale", "n_keypoints", "gumbel", "feature_weight", "cycle_weight",
)  # fmt: skip
SUCCESS_RRE_DEG, SUCCESS_RTE_FRACTION = 1.0, 0.01  # object success: RRE < 1 deg, RTE < 1% of the bbox diagonal


def model_config(args: argparse.Namespace) -> DCPConfig | PRNetConfig:
    """The architecture the flags ask for."""
    common_args = dict(emb_dims=args.emb_dims, k=args.k, channels=tuple(args.channels), n_heads=args.n_heads, ff_dims=args.ff_dims)
    if args.backbone == "prnet":
        count = int(args.n_keypoints) if args.n_keypoints >= 1 else args.n_keypoints  # >= 1: a count, else a fraction
        return PRNetConfig(**common_args, n_keypoints=count, gumbel=args.gumbel)
    return DCPConfig(backbone=args.backbone, **common_args)


def unrolled_passes(args: argparse.Namespace) -> int:
    """Passes unrolled in training: --passes, else 4 for DCP and PRNet's 3 internal iterations (DECISIONS D2)."""
    return args.passes or (3 if args.backbone == "prnet" else 4)


def scan_preprocess(args: argparse.Namespace) -> ScanPreprocess:
    """The LiDAR scan preprocessing the flags ask for (stored in the card; the pipeline repeats it at inference)."""
    return ScanPreprocess(min_range=args.min_range, max_range=args.max_range, ground_z=args.ground_z,
                          voxel_size=args.voxel_size, num_points=args.num_points, scale=args.scale)  # fmt: skip


def datasets(args: argparse.Namespace) -> tuple[Dataset, Dataset, dict, float]:
    """(train, validation, the card's preprocess block, the scale that turns network translations into data units).

    Object SPECs give DCP-protocol pairs; scan SPECs (``kitti:ROOT``, ``sim:DIR``, joined with '+') give LiDAR
    pairs, validated on real KITTI sequences (``--val-sequences``) of the kitti root; ``cache:FILE`` (``dlc cache
    scans``) gives the same LiDAR pairs from a scan cache, without the scan files.
    """
    specs = parse_specs(args.data, TRAIN_SPECS)
    scans = [s for s in specs if s.kind in SCAN_SPECS + ("cache",)]
    if not scans:
        if len(specs) > 1:
            raise InputError(f"data spec {args.data!r}: only scan specs (kitti, sim) can be combined with '+'")
        train, val = training_sets(specs[0], args.protocol, args.num_points, args.seed)
        return train, val, {"num_points": args.num_points, "normalise": "centroid at the origin, max radius 1 (ModelNet40)"}, 1.0
    if len(scans) < len(specs):
        raise InputError(f"data spec {args.data!r}: scan specs (kitti, sim) cannot be mixed with object specs")
    cfg = scan_preprocess(args)
    if any(s.kind == "cache" for s in scans):
        if len(scans) > 1:
            raise InputError(f"data spec {args.data!r}: cache:FILE stands alone (it holds the training and validation scans)")
        cache = read_scan_cache(scans[0].path)
        cache.check(cfg, scan_selection(args))
        train_sequences, val_sequences = cache.role("train"), cache.role("val")
    else:
        train_sequences, val_sequences = scan_sequences(args, scans)
    train = ScanPairDataset(train_sequences, cfg, args.max_gap, args.seed, fixed=False, yaw_deg=args.yaw_deg)
    val = ScanPairDataset(val_sequences, cfg, args.max_gap, args.seed + 1, fixed=True)
    return train, val, cfg.card(), cfg.scale


def scan_sequences(args: argparse.Namespace, scans: list[DataSpec]) -> tuple[list[KittiSequence], list[KittiSequence]]:
    """(training, validation) sequences of scan SPECs: every sim folder and --kitti-sequences of each kitti root for
    training, --val-sequences of the first kitti root for validation."""
    kitti = [s for s in scans if s.kind == "kitti"]
    if not kitti:
        raise InputError(f"data spec {args.data!r}: validation needs real scans: add kitti:ROOT (see --val-sequences)")
    train = [q for s in scans for q in open_sequences(s.kind, s.path, args.kitti_sequences, args.poses_name)]
    return train, open_sequences("kitti", kitti[0].path, args.val_sequences, args.poses_name)


def scan_selection(args: argparse.Namespace) -> dict:
    """The flags that choose which scans a LiDAR run uses (a scan cache records them; a run from it must agree)."""
    return {"kitti_sequences": list(args.kitti_sequences), "val_sequences": list(args.val_sequences), "poses_name": args.poses_name}


def cache_scans(args: argparse.Namespace) -> int:
    """Entry point of ``dlc cache scans``: the candidates, poses and frames of the training and validation
    sequences a ``dlc train registration --data SPEC`` run would read, written atomically to one .npz."""
    scans = parse_specs(args.data, SCAN_SPECS)
    cfg = ScanPreprocess(**{f: getattr(args, f) for f in CANDIDATE_FIELDS})
    started = time.perf_counter()
    train, val = scan_sequences(args, scans)
    cached = [
        cache_sequence(seq, role, cfg, lambda items, total, seq=seq: common.progress(items, total, str(seq.folder)))
        for role, group in (("train", train), ("val", val))
        for seq in group
    ]
    source = {"data": args.data, "command": args.command, "git_commit": common.git_commit(), "date": common.now_iso()}
    size = write_scan_cache(args.out, cached, cfg, scan_selection(args), source)
    counts = {role: sum(len(s) for s in cached if s.role == role) for role in ("train", "val")}
    points = sum(len(s.points) for s in cached)
    print(f"wrote {args.out}: {size / 2**20:.1f} MiB, {counts['train']} training and {counts['val']} validation scans "
          f"in {len(cached)} sequences, {points / sum(counts.values()):.0f} candidates per scan on average, "
          f"{time.perf_counter() - started:.0f} s", flush=True)  # fmt: skip
    return 0


def dlc_config(args: argparse.Namespace) -> DLCConfig:
    """The DLC hyperparameters the flags ask for (ValueError becomes a one-line input error)."""
    try:
        return DLCConfig(
            K=args.K, beta=args.beta, alpha=args.alpha, mu=args.mu, agg=args.agg,
            terms=tuple(args.terms), trainable=tuple(args.trainable),
        )  # fmt: skip
    except ValueError as exc:
        raise InputError(f"DLC option: {exc}") from None


def build_training(args: argparse.Namespace, rank: Rank, device: torch.device, steps_per_epoch: int) -> common.Training:
    """Model, DLC loss, optimiser and LR schedule for a run, seeded so every rank starts identical."""
    common.seed_everything(args.seed)
    model = registration_model(model_config(args)).to(device)
    dlc = DLCLoss(dlc_config(args)).to(device) if args.dlc else None

    def schedule(optimizer: torch.optim.Optimizer, total: int) -> torch.optim.lr_scheduler.LRScheduler:
        milestones = sorted({max(1, int(f * total)) for f in args.lr_milestones})
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=0.1)

    return common.start_training(model, dlc, args, rank, device, steps_per_epoch, schedule)


def train_step(t: common.Training, batch: dict[str, torch.Tensor], args: argparse.Namespace, rank: Rank) -> dict[str, float]:
    """One optimiser step on a batch; returns the numbers the progress bar shows."""
    t.runner.train()
    src, tgt, r_gt, t_gt = batch["src"], batch["tgt"], batch["rotation"], batch["translation"]
    cycle = {"cycle": True} if args.backbone == "prnet" and args.cycle_weight > 0 else {}
    passes = t.runner(src, tgt, passes=unrolled_passes(args), **cycle)
    task = unrolled_loss(passes, r_gt, t_gt)
    loss, stats = task, {"task": task.item()}
    for name, value in auxiliary_losses(passes, PASS_DISCOUNT).items():  # PRNet's feature and cycle terms
        loss = loss + getattr(args, f"{name}_weight") * value
        stats[name] = value.item()
    if t.dlc is not None:
        landscape = make_landscape(args.landscape, t.model, src, tgt, passes, r_gt, t_gt)
        terms = t.dlc(landscape, chart_point(batch["euler"], t_gt), rigid_chart(args.noise_rot_deg, args.noise_trans), t.generator)
        loss = loss + terms.loss  # on top of the task and any PRNet terms: the hinges are the arms' only difference
        stats.update(h1=terms.h1.item(), h2=terms.h2.item(), h3=terms.h3.item(), alpha=terms.alpha, mu=terms.mu)
    common.optimiser_step(t, loss, rank, args.grad_clip)
    stats["loss"] = loss.item()
    return stats


@torch.no_grad()
def validate(model: RegistrationModel, loader: DataLoader, passes: int, device: torch.device, scale: float = 1.0) -> dict[str, float]:
    """Mean task loss, RRE and RTE (in data units: translations times `scale`) of the final pass on fixed pairs."""
    model.eval()
    losses, rres, rtes = [], [], []
    for batch in loader:
        batch = {k: v.to(device) for k, v in batch.items()}
        out = model(batch["src"], batch["tgt"], passes=passes)[-1]
        losses.append(task_loss(out.rotation, out.translation, batch["rotation"], batch["translation"]).cpu())
        rres.append(rre_deg(out.rotation.double().cpu().numpy(), batch["rotation"].double().cpu().numpy()))
        rtes.append(scale * rte(out.translation.cpu().numpy(), batch["translation"].cpu().numpy()))
    return {
        "val_loss": float(torch.cat(losses).mean()),
        "val_rre_deg_mean": float(np.concatenate(rres).mean()),
        "val_rte_mean": float(np.concatenate(rtes).mean()),
    }


def _card(args: argparse.Namespace, t: common.Training, metrics: dict, preprocess: dict, device: torch.device) -> dict:
    dlc_block: dict = {"enabled": False}
    if t.dlc is not None:
        learned = {name: float(getattr(t.dlc, name)()) for name in t.dlc.config.trainable}
        dlc_block = {
            **t.dlc.config.card(),
            **learned,
            "landscape": args.landscape,
            "noise": rigid_chart(args.noise_rot_deg, args.noise_trans).card(),
        }
    return {
        "task": "registration",
        "backbone": args.backbone,
        "config": model_config(args).card(),
        "preprocess": preprocess,
        "inference": {"passes": args.test_passes, "stop_angle_deg": args.stop_angle_deg, "stop_translation": args.stop_translation},
        "dlc": dlc_block,
        "train": {
            "data": args.data, "protocol": args.protocol, "epochs": t.epoch, "steps": t.step, "batch_size": args.batch_size,
            "passes": unrolled_passes(args), "feature_weight": args.feature_weight, "cycle_weight": args.cycle_weight,
            "lr": args.lr, "lr_milestones": args.lr_milestones, "weight_decay": args.weight_decay, "grad_clip": args.grad_clip,
            "seed": args.seed, "command": args.command, "git_commit": common.git_commit(),
            "torch": torch.__version__, "device": device.type, "world_size": args.nproc, "wall_s": round(t.wall_s, 1),
            "date": common.now_iso(), **cache_provenance(args),
        },
        "metrics": metrics,
    }  # fmt: skip


def cache_provenance(args: argparse.Namespace) -> dict:
    """For a run from ``cache:FILE``, what the cache was made from, so the card still names the real data."""
    kind, _, path = args.data.partition(":")
    return {"data_source": read_cache_source(path)} if kind == "cache" else {}


def train_worker(rank: Rank, args: argparse.Namespace) -> None:
    """The training loop run by every rank; rank 0 validates and writes the files."""
    device = common.resolve_device(args.device)
    if device.type == "cuda":
        device = torch.device("cuda", rank.rank % torch.cuda.device_count())
    train_set, val_set, preprocess, scale = datasets(args)
    sampler = DistributedSampler(train_set, rank.world_size, rank.rank, shuffle=True, seed=args.seed, drop_last=True)
    loader = DataLoader(train_set, batch_size=args.batch_size, sampler=sampler, drop_last=True)
    if len(loader) == 0:
        raise InputError(f"{args.data}: {len(train_set)} training clouds are fewer than one batch per process")
    val_loader = DataLoader(val_set, batch_size=args.batch_size)
    t = build_training(args, rank, device, len(loader))
    out = Path(args.out)
    if args.resume:
        common.resume(t, out, args, RESUME_KEYS)

    def end_of_epoch() -> None:
        metrics = validate(t.model, val_loader, unrolled_passes(args), device, scale)
        common.save_progress(out, t, metrics, _card(args, t, metrics, preprocess, device), args, RESUME_KEYS)

    common.fit(t, loader, sampler, args.epochs, rank,
               lambda batch: train_step(t, {k: v.to(device) for k, v in batch.items()}, args, rank), end_of_epoch)  # fmt: skip
    if rank.is_main:
        print(f"saved {out}/model.pt and model_card.json after {t.step} steps", flush=True)


def train(args: argparse.Namespace) -> int:
    """Entry point of ``dlc train registration``."""
    device = common.resolve_device(args.device)
    dlc_config(args)  # refuse bad DLC options before any process starts
    launch(train_worker, args.nproc, device, args)
    return 0


def network_input(points: np.ndarray, num_points: int, seed: int, device: torch.device) -> torch.Tensor:
    """The fixed-size random subset of a cloud that the network sees (the card's num_points), as a (1, n, 3) tensor."""
    rng = np.random.default_rng(seed)
    chosen = points[rng.choice(len(points), size=num_points, replace=len(points) < num_points)]
    return torch.as_tensor(chosen, dtype=torch.float32, device=device)[None]


def register_pairs(
    model: RegistrationModel, card: dict, pairs: Dataset, passes: int, icp: ICPConfig | None, device: torch.device
) -> dict[str, object]:
    """Register every pair one at a time: the network on the card's point count (passes with early stop), then
    optional ICP on the full clouds; returns per-pair arrays."""
    inference = card.get("inference", {})
    n = card["preprocess"]["num_points"]
    rows: dict[str, list] = {k: [] for k in ("r_pred", "t_pred", "r_gt", "t_gt", "euler", "diag", "passes", "seconds")}
    skipped = 0
    for i in common.progress(range(len(pairs)), len(pairs), "pairs"):
        pair = pairs[i]
        try:
            src = check_cloud(pair["src"].numpy(), f"pair {i} source")
            tgt = check_cloud(pair["tgt"].numpy(), f"pair {i} target")
        except InputError as exc:
            skipped += 1
            print(f"skipped: {exc}", flush=True)
            continue
        started = time.perf_counter()
        with torch.no_grad():
            results = model(
                network_input(src, n, 2 * i, device),
                network_input(tgt, n, 2 * i + 1, device),
                passes=passes,
                stop_angle_deg=inference.get("stop_angle_deg"),
                stop_translation=inference.get("stop_translation"),
            )
        transform = to_matrix(results[-1].rotation, results[-1].translation)[0].double().cpu().numpy()
        if icp is not None:
            transform = refine(src, tgt, transform, icp).transform
        rows["seconds"].append(time.perf_counter() - started)
        rows["r_pred"].append(transform[:3, :3])
        rows["t_pred"].append(transform[:3, 3])
        rows["r_gt"].append(pair["rotation"].double().numpy())
        rows["t_gt"].append(pair["translation"].double().numpy())
        rows["euler"].append(pair["euler"].double().numpy())
        rows["diag"].append(float(np.linalg.norm(np.ptp(tgt, axis=0))))
        rows["passes"].append(len(results))
    arrays = {k: np.asarray(v) for k, v in rows.items()}
    arrays["skipped"] = skipped
    return arrays


def pair_metrics(rows: dict[str, object]) -> dict[str, object]:
    """The registration JSON keys of DESIGN.md §2 (plus success_rate, D5) from register_pairs' arrays."""
    if len(rows["seconds"]) == 0:
        raise InputError("no pair could be registered (all were skipped)")
    metrics = registration_metrics(rows["r_pred"], rows["t_pred"], rows["r_gt"], rows["t_gt"], rows["euler"])
    ok = success_mask(
        rre_deg(rows["r_pred"], rows["r_gt"]), rte(rows["t_pred"], rows["t_gt"]), SUCCESS_RRE_DEG, SUCCESS_RTE_FRACTION * rows["diag"]
    )
    return {**metrics, "success_rate": float(ok.mean()), "passes_mean": float(np.mean(rows["passes"]))}


def icp_config(args: argparse.Namespace) -> ICPConfig | None:
    """The ICP refinement the eval flags ask for (None without --icp)."""
    if args.icp is None:
        return None
    try:
        return ICPConfig(
            method=args.icp,
            max_correspondence_distance=args.icp_max_dist,
            min_correspondence_distance=args.icp_min_dist,
            iterations=args.icp_iters,
        )
    except InputError as exc:
        raise InputError(f"ICP option: {exc}") from None


def evaluate(args: argparse.Namespace) -> int:
    """Entry point of ``dlc eval registration``: metrics table on stdout, JSON written atomically."""
    device = common.resolve_device(args.device)
    icp = icp_config(args)
    model, card = load_registration_model(args.model, device)
    num_points = args.num_points or card["preprocess"]["num_points"]
    pairs = evaluation_set(parse_spec(args.data, TRAIN_SPECS), args.protocol, num_points, args.seed)
    if args.pairs is not None:
        pairs = Subset(pairs, range(min(args.pairs, len(pairs))))
    passes = args.iters or card.get("inference", {}).get("passes", 1)
    rows = register_pairs(model, card, pairs, passes, icp, device)
    result = {
        "task": "registration",
        "model": str(args.model),
        "data": args.data,
        "protocol": args.protocol,
        "command": args.command,
        "samples": int(len(rows["seconds"])),
        "skipped": int(rows["skipped"]),
        **pair_metrics(rows),
        "icp": args.icp,
        "passes_max": passes,
        "num_points": num_points,
        "time_ms": common.time_stats_ms(list(rows["seconds"])),
        "peak_rss_mb": round(common.peak_rss_mb(), 1),
        "device": device.type,
        "machine": common.machine(),
        "date": common.now_iso(),
    }
    print_table([result])
    if args.json:
        write_json(args.json, result)
        print(f"wrote {args.json}")
    return 0


def print_table(results: list[dict]) -> None:
    """A fixed-width metrics table, one row per evaluation result."""
    cols = [
        ("model", "model", "{}"), ("icp", "icp", "{}"), ("pairs", "samples", "{}"), ("MSE(Euler)", "euler_mse_deg2", "{:.4g}"),
        ("RMSE(Euler)", "euler_rmse_deg", "{:.4g}"), ("MAE(Euler)", "euler_mae_deg", "{:.4g}"), ("MSE(R)", "r_mse", "{:.3g}"),
        ("MSE(t)", "t_mse", "{:.3g}"), ("RRE deg", "rre_deg_mean", "{:.3f}"), ("RTE", "rte_mean", "{:.4f}"),
        ("success", "success_rate", "{:.1%}"), ("ms/pair", "time_ms", "{:.0f}"),
    ]  # fmt: skip
    cells = [[name for name, _, _ in cols]]
    for r in results:
        row = []
        for _, key, fmt in cols:
            value = r.get(key)
            value = value["median"] if isinstance(value, dict) else value
            row.append("-" if value is None else fmt.format(Path(value).name if key == "model" else value))
        cells.append(row)
    widths = [max(len(c[i]) for c in cells) for i in range(len(cols))]
    for c in cells:
        print("  ".join(v.rjust(w) for v, w in zip(c, widths)))
