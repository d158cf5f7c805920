"""``dlc``: the command-line entry point, a thin dispatcher with lazy imports.

Each verb's module is imported only when that verb runs, so ``dlc train`` and ``dlc eval`` work without rclpy
and ``dlc --help`` is instant. Bad input ends with one ``error: ...`` line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import sys
from typing import Callable, Sequence

EXIT_INPUT_ERROR = 2
EXIT_INTERRUPTED = 130
KEYFRAME_DISTANCE, LOCAL_MAP_KEYFRAMES = 3.0, 6  # PipelineConfig's defaults (not imported here: it pulls in torch)


def _csv(kind: Callable[[str], object]) -> Callable[[str], list]:
    def parse(text: str) -> list:
        try:
            return [kind(x) for x in text.split(",") if x.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}") from None

    return parse


def _int_at_least(low: int) -> Callable[[str], int]:
    """An argparse type: an integer >= low."""

    def parse(text: str) -> int:
        value = int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value

    parse.__name__ = "int"  # argparse's "invalid int value: 'x'"
    return parse


_positive_int = _int_at_least(1)


def _fractions(text: str) -> list[float]:
    """An argparse type: comma-separated numbers strictly between 0 and 1 (empty: none)."""
    values = _csv(float)(text)
    if any(not 0.0 < v < 1.0 for v in values):
        raise argparse.ArgumentTypeError(f"expected fractions between 0 and 1, got {text!r}")
    return values


def _float_in(low: float, high: float) -> Callable[[str], float]:
    """An argparse type: a float in [low, high]."""

    def parse(text: str) -> float:
        value = float(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be in [{low:g}, {high:g}], got {value:g}")
        return value

    return parse


def _run_lazily(module: str, function: str, args: argparse.Namespace) -> int:
    return getattr(importlib.import_module(module), function)(args)


def _lazy(module: str, function: str) -> Callable[[argparse.Namespace], int]:
    """A handler that imports `module` only when the verb runs (a partial, so parsed args stay picklable for DDP)."""
    return functools.partial(_run_lazily, module, function)


def _parser(sub: argparse._SubParsersAction, name: str, help_text: str, example: str) -> argparse.ArgumentParser:
    return sub.add_parser(
        name,
        help=help_text,
        description=help_text,
        epilog=f"example:\n  {example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="compute device (default auto)")


def _add_dlc_flags(p: argparse.ArgumentParser) -> None:
    """The DLC flags, the same in every trainer (DECISIONS.md D5)."""
    g = p.add_argument_group("DLC loss (METHOD.md §2)")
    g.add_argument("--dlc", action=argparse.BooleanOptionalAction, default=True, help="add the DLC hinges (default on)")
    g.add_argument("--beta", type=float, default=1.0, help="trade-off weight of the hinges (λ in the paper; default 1)")
    g.add_argument("--K", type=_positive_int, default=3, help="noise draws per ground truth (default 3)")
    g.add_argument("--alpha", type=float, default=0.5, help="interpolation weight α in (0, 1) (default 0.5)")
    g.add_argument("--mu", type=float, default=0.1, help="strong star-convexity modulus μ >= 0 (default 0.1)")
    g.add_argument("--agg", default="mean", choices=("mean", "sum", "max"), help="aggregation over the K draws")
    g.add_argument("--terms", type=_csv(str), default=["h1", "h2", "h3"], help="hinge terms to use (default h1,h2,h3)")
    g.add_argument("--trainable", type=_csv(str), default=[], help="make alpha and/or mu trainable (default none)")


def _add_train_registration(sub: argparse._SubParsersAction) -> None:
    p = _parser(
        sub,
        "registration",
        "Train DCP or DLC+DCP on object registration pairs.",
        "dlc train registration --data shapes --dlc --out runs/dlc_dcp --epochs 10 --steps 2000",
    )
    p.add_argument("--data", default="shapes",
                   help="data SPEC: shapes | modelnet40:PATH | kitti:ROOT and/or sim:DIR joined with '+' | cache:FILE.npz "
                        "(dlc cache scans) (default shapes)")  # fmt: skip
    p.add_argument("--protocol", default="clean", choices=("clean", "noisy", "unseen", "partial"))
    p.add_argument("--out", required=True, help="output model folder (model.pt, model_card.json, train_state.pt)")
    p.add_argument("--backbone", default="dcp", choices=("dcp", "dcp-pointnet", "prnet"),
                   help="dcp = DGCNN embedding (DCP-v2); prnet = PRNet (partial-to-partial)")  # fmt: skip
    p.add_argument("--epochs", type=_positive_int, default=10)
    p.add_argument("--steps", type=_positive_int, default=None, help="cap on optimiser steps (default: epochs x batches)")
    p.add_argument("--batch-size", type=_positive_int, default=16)
    p.add_argument("--resume", action="store_true", help="continue from OUT/train_state.pt")
    p.add_argument("--nproc", type=_positive_int, default=1, help="data-parallel processes (DDP: gloo on CPU, nccl on GPU)")
    _add_common(p)
    a = p.add_argument_group("architecture (defaults sized for a 2-core CPU; DCP's paper size: --emb-dims 512 "
                             "--channels 64,64,128,256 --ff-dims 1024 --num-points 1024)")  # fmt: skip
    a.add_argument("--num-points", type=_positive_int, default=256, help="points per cloud seen by the network")
    a.add_argument("--emb-dims", type=_positive_int, default=128)
    a.add_argument("--channels", type=_csv(int), default=[32, 32, 64, 128], help="DGCNN edge-conv widths")
    a.add_argument("--k", type=_positive_int, default=20, help="DGCNN neighbours")
    a.add_argument("--ff-dims", type=_positive_int, default=256, help="transformer feed-forward width")
    a.add_argument("--n-heads", type=_positive_int, default=4)
    a.add_argument("--passes", type=_positive_int, default=None,
                   help="weight-shared passes unrolled in training (default 4 for DCP, 3 PRNet iterations)")  # fmt: skip
    a.add_argument("--n-keypoints", type=float, default=0.5, help="PRNet keypoints: a count (>= 1) or a fraction of the points")
    a.add_argument("--gumbel", action=argparse.BooleanOptionalAction, default=True, help="PRNet: hard Gumbel-softmax matching")
    a.add_argument("--feature-weight", type=float, default=0.1, help="PRNet: weight of the feature-disparity term")
    a.add_argument("--cycle-weight", type=float, default=0.0, help="PRNet: weight of the cycle-consistency term (0 = off)")
    a.add_argument("--test-passes", type=_positive_int, default=5, help="maximum passes at test time")
    a.add_argument("--stop-angle-deg", type=float, default=0.05, help="test-time early stop: update angle below this")
    a.add_argument("--stop-translation", type=float, default=1e-3, help="... and update translation below this")
    o = p.add_argument_group("optimiser (Adam, as DCP)")
    o.add_argument("--lr", type=float, default=1e-3)
    o.add_argument("--weight-decay", type=float, default=1e-4)
    o.add_argument("--grad-clip", type=float, default=1.0, help="max gradient norm (guards the SVD backward)")
    o.add_argument("--lr-milestones", type=_fractions, default=[0.3, 0.6, 0.8],
                   help="LR x 0.1 at these fractions of the planned steps (default DCP's 0.3,0.6,0.8; '' = constant)")
    _add_dlc_flags(p)
    r = p.add_argument_group("registration DLC chart and landscape (DECISIONS.md D1)")
    r.add_argument("--noise-rot-deg", type=float, default=10.0, help="σ of the Gaussian noise on each Euler angle")
    r.add_argument("--noise-trans", type=float, default=0.1, help="σ of the Gaussian noise on each translation axis")
    r.add_argument("--landscape", default="label", choices=("label", "procrustes", "rerun"),
                   help="L_θ(p; x) the hinges use (default label: the pick of the D1 comparison, README)")
    s = _add_scan_flags(p, training=True)
    s.add_argument("--scale", type=float, default=40.0, help="network input: divide coordinates by this (m)")
    p.set_defaults(handler=_lazy("training.registration", "train"))


def _add_scan_flags(p: argparse.ArgumentParser, training: bool) -> argparse._ArgumentGroup:
    """The LiDAR scan selection and candidate preprocessing flags, shared by dlc train registration and dlc cache scans."""
    s = p.add_argument_group("LiDAR scans (data kitti:ROOT and/or sim:DIR, joined with '+')")
    s.add_argument("--kitti-sequences", type=_csv(str), default=["10"], help="KITTI sequences to train on (default 10)")
    s.add_argument("--val-sequences", type=_csv(str), default=["01", "02"], help="held-out KITTI sequences (01,02)")
    s.add_argument("--poses-name", default=None, help="per-sequence pose file, e.g. poses.txt (default ROOT/poses/SS.txt)")
    if training:
        s.add_argument("--max-gap", type=_positive_int, default=10, help="pairs (i, i+g) for g = 1..max-gap")
        s.add_argument("--yaw-deg", type=float, default=30.0, help="yaw augmentation of the source, ± degrees")
    s.add_argument("--min-range", type=float, default=3.0, help="crop: drop returns closer than this (m)")
    s.add_argument("--max-range", type=float, default=40.0, help="crop: drop returns farther than this (m)")
    s.add_argument("--ground-z", type=float, default=-1.3, help="network input: drop points below this height (m)")
    s.add_argument("--voxel-size", type=float, default=0.8, help="network input: voxel size (m)")
    return s


def _add_cache(verbs: argparse._SubParsersAction) -> None:
    cache = verbs.add_parser("cache", help="build data caches", description="Build compact caches of training data.")
    kinds = cache.add_subparsers(dest="cache", required=True, metavar="KIND")
    p = _parser(kinds, "scans", "Cache what LiDAR training reads of the scans (each scan's network candidates, the poses, "
                "the frame numbers) in one .npz, for dlc train registration --data cache:FILE where the scans are not.",
                "dlc cache scans --data sim:runs/sim+kitti:../shared/data/kitti_mini --poses-name poses.txt "
                "--kitti-sequences 10 --val-sequences 01,02 --out runs/lidar_cache.npz")  # fmt: skip
    p.add_argument("--data", required=True, help="scan SPEC, as for dlc train registration: kitti:ROOT and/or sim:DIR, joined with '+'")
    p.add_argument("--out", required=True, metavar="FILE.npz", help="the cache file (written atomically)")
    _add_scan_flags(p, training=False)
    p.set_defaults(handler=_lazy("training.registration", "cache_scans"))


def _add_train_lstm(sub: argparse._SubParsersAction) -> None:
    p = _parser(
        sub,
        "lstm",
        "Train the LSTM digit classifier (pixel-by-pixel MNIST, METHOD.md §3.2) with or without DLC.",
        "dlc train lstm --data ../shared/data/mnist_5k --mode pixel --dlc --out runs/lstm_dlc --epochs 60",
    )
    p.add_argument("--data", required=True, help="MNIST folder (mnist_train_5k.csv or train-images-idx3-ubyte[.gz]), "
                   "a CSV (label, 784 pixels per row) or an images IDX file with its labels beside it")  # fmt: skip
    p.add_argument("--out", required=True, help="output model folder (model.pt, model_card.json, train_state.pt)")
    p.add_argument("--mode", default="pixel", choices=("pixel", "row"), help="784 steps of 1 pixel (default) or 28 rows")
    p.add_argument("--hidden", type=_positive_int, default=64, help="LSTM hidden size (default 64, the example's)")
    p.add_argument("--epochs", type=_positive_int, default=60)
    p.add_argument("--steps", type=_positive_int, default=None, help="cap on optimiser steps (default: epochs x batches)")
    p.add_argument("--batch-size", type=_positive_int, default=64)
    p.add_argument("--val-fraction", type=float, default=0.1, help="stratified share held out for validation (0.1)")
    p.add_argument("--shift", type=int, default=2, choices=range(0, 5), metavar="0-4",
                   help="augmentation: random shifts of up to this many pixels (default 2)")  # fmt: skip
    p.add_argument("--rotate", type=_float_in(0.0, 45.0), default=0.0, help="augmentation: random rotations of up to ± this "
                   "many degrees (0-45, default 0)")  # fmt: skip
    p.add_argument("--zoom", type=_float_in(0.0, 0.5), default=0.0, help="augmentation: random scaling by 1 ± up to this "
                   "(0-0.5, default 0)")  # fmt: skip
    p.add_argument("--resume", action="store_true", help="continue from OUT/train_state.pt")
    p.add_argument("--nproc", type=_positive_int, default=1, help="data-parallel processes (DDP: gloo on CPU, nccl on GPU)")
    _add_common(p)
    o = p.add_argument_group("optimiser (Adam, cosine decay over the planned steps)")
    o.add_argument("--lr", type=float, default=2e-3)
    o.add_argument("--weight-decay", type=float, default=0.0)
    o.add_argument("--grad-clip", type=float, default=1.0, help="max gradient norm")
    _add_dlc_flags(p)
    p.add_argument_group("classification DLC chart").add_argument(
        "--noise-sigma", type=float, default=1.0, help="σ of the Gaussian noise on the one-hot's logits (default 1, py-sc)")
    p.set_defaults(handler=_lazy("training.lstm", "train"))


def _add_eval_lstm(sub: argparse._SubParsersAction) -> None:
    p = _parser(
        sub,
        "lstm",
        "Classify the test digits of an MNIST folder or file and report the accuracy.",
        "dlc eval lstm --model models/lstm_dlc_mnist --data ../shared/data/mnist_5k --json lstm.json",
    )
    p.add_argument("--model", required=True, help="model folder (model.pt + model_card.json)")
    p.add_argument("--data", required=True, help="MNIST folder (its t10k pair), a CSV, or an images IDX file")
    p.add_argument("--samples", type=_positive_int, default=None, help="only the first N digits")
    p.add_argument("--json", default=None, help="write the metrics JSON here (atomically)")
    _add_common(p)
    p.set_defaults(handler=_lazy("training.lstm", "evaluate"))


def _add_train_homography(sub: argparse._SubParsersAction) -> None:
    p = _parser(
        sub,
        "homography",
        "Train the DeepLK-style homography model (regression + DLKFM pyramids + IC-LK) with DLC (PRISE) or with "
        "DeepLK's own convex loss (--no-dlc), on pairs made from the training photos of an image folder.",
        "dlc train homography --images ../shared/data/homography/photos --dlc --out runs/homography_dlc",
    )
    p.add_argument("--images", required=True, help="folder of photos (the held-out ones are never used in training)")
    p.add_argument("--out", required=True, help="output model folder (model.pt, model_card.json, train_state.pt)")
    p.add_argument("--multimodal", action="store_true", help="templates rendered map-like (camera-versus-map pairs)")
    p.add_argument("--regression-steps", type=_int_at_least(0), default=600,
                   help="stage 1: regression network steps (0 with --init: fine-tune the features only)")
    p.add_argument("--init", default=None, help="start from this trained homography model folder (fine-tuning)")
    p.add_argument("--regression-from", default=None,
                   help="take the regression network from this trained model folder (same regression architecture); "
                        "with no steps: only compose it with --init's pyramids")
    p.add_argument("--standardise-regression", action=argparse.BooleanOptionalAction, default=None,
                   help="bring both images to zero mean, unit variance before the regression (blind to exposure); "
                        "default: on for a new regression, as trained for one taken from --init/--regression-from")
    p.add_argument("--steps", type=_int_at_least(0), default=600,
                   help="stage 2: feature pyramid steps (DLC or DeepLK loss; 0 with --init: the regression only)")
    p.add_argument("--batch-size", type=_positive_int, default=8)
    p.add_argument("--pairs-per-epoch", type=_positive_int, default=512, help="fresh random pairs per epoch")
    p.add_argument("--channels", type=_positive_int, default=16, help="feature pyramid width")
    p.add_argument("--features", default="learned", choices=("learned", "intensity"),
                   help="what LK aligns: the learned feature maps, or the grey-level pyramid (classical LK, nothing to "
                        "train: --steps 0)")
    p.add_argument("--lr", type=float, default=1e-3, help="feature pyramids (Adam)")
    p.add_argument("--regression-lr", type=float, default=1e-3, help="regression network (Adam)")
    p.add_argument("--convex-weight", type=float, default=0.1, help="--no-dlc: weight of DeepLK's convex loss (0.1, MSCOCO)")
    p.add_argument("--augment", action=argparse.BooleanOptionalAction, default=True,
                   help="pairs from random windows of the photos, mirrored half the time (default on)")
    p.add_argument("--workers", type=_int_at_least(0), default=0, help="processes making pairs beside the trainer (default 0: inline)")
    p.add_argument("--pairs-on-device", action="store_true",
                   help="make the training pairs on --device (a GPU with few host cores); single-modal only")
    p.add_argument("--resume", action="store_true", help="continue from OUT/train_state.pt")
    _add_common(p)
    _add_dlc_flags(p)
    p.set_defaults(handler=_lazy("training.homography", "train"))


def _add_eval_homography(sub: argparse._SubParsersAction) -> None:
    p = _parser(
        sub,
        "homography",
        "Score a homography model (or SIFT + RANSAC) on pairs made from held-out photos, or on a DeepLK-format folder.",
        "dlc eval homography --model models/homography_nodlc --images ../shared/data/homography/photos --pairs 200 --json h.json",
    )
    p.add_argument("--model", default=None, help="model folder (needed for --method model)")
    p.add_argument("--images", required=True, help="photo folder (its held-out photos) or DeepLK folder (val2014_*)")
    p.add_argument("--method", default="model", choices=("model", "sift"), help="the model, or SIFT + RANSAC (OpenCV)")
    p.add_argument("--pairs", type=_positive_int, default=200, help="pairs made from the photos (default 200)")
    p.add_argument("--split", default="test", choices=("test", "all"), help="photos to use: held-out (default) or all")
    p.add_argument("--multimodal", action="store_true", help="map-like templates")
    p.add_argument("--photometric", action="store_true",
                   help="the same pairs seen as two exposures: template gain/offset changed, sensor noise on both")
    p.add_argument("--json", default=None, help="write the metrics JSON here (atomically)")
    _add_common(p)
    p.set_defaults(handler=_lazy("training.homography", "evaluate"))


def _add_eval_registration(sub: argparse._SubParsersAction) -> None:
    p = _parser(
        sub,
        "registration",
        "Evaluate a registration model on object pairs (optionally with ICP refinement).",
        "dlc eval registration --model models/dcp_dlc_shapes --data shapes --protocol unseen --icp point-to-plane --json out.json",
    )
    p.add_argument("--model", required=True, help="model folder (model.pt + model_card.json)")
    p.add_argument("--data", default="shapes", help="data SPEC: shapes | modelnet40:PATH | bunny:PATH")
    p.add_argument("--protocol", default="clean", choices=("clean", "noisy", "unseen", "partial"))
    p.add_argument("--iters", type=_positive_int, default=None, help="maximum network passes (default: the card's)")
    p.add_argument("--icp", default=None, choices=("point-to-point", "point-to-plane", "gicp"), help="refine with ICP")
    p.add_argument("--icp-iters", type=_positive_int, default=50, help="ICP iterations per stage")
    p.add_argument("--icp-max-dist", type=float, default=0.2, help="ICP correspondence distance (cloud units)")
    p.add_argument("--icp-min-dist", type=float, default=0.02, help="coarse-to-fine ICP down to this distance")
    p.add_argument("--num-points", type=_positive_int, default=None, help="points per cloud (default: the card's)")
    p.add_argument("--pairs", type=_positive_int, default=None, help="evaluate only the first N pairs")
    p.add_argument("--json", default=None, help="write the metrics JSON here (atomically)")
    _add_common(p)
    p.set_defaults(handler=_lazy("training.registration", "evaluate"))


def _add_pipeline_flags(p: argparse.ArgumentParser) -> None:
    """The LiDAR pipeline's run-time settings, the same for dlc eval pairs, dlc bag eval and the node."""
    g = p.add_argument_group("pipeline (network passes -> ICP -> consistency check -> fallback)")
    g.add_argument("--iters", type=_positive_int, default=None, help="maximum network passes (default: the card's)")
    g.add_argument("--icp", default="point-to-plane", choices=("point-to-point", "point-to-plane", "gicp"),
                   help="ICP from the prior (streamed pairs; --model none)")  # fmt: skip
    g.add_argument("--net-icp", default="gicp", choices=("point-to-point", "point-to-plane", "gicp"),
                   help="ICP from the network's guess (gicp: bench/icp_gate.py)")  # fmt: skip
    g.add_argument("--icp-iters", type=_positive_int, default=30, help="ICP iterations per stage")
    g.add_argument("--icp-max-dist", type=float, default=2.0, help="ICP correspondence distance, coarse (m)")
    g.add_argument("--icp-min-dist", type=float, default=0.5, help="ICP correspondence distance, fine (m)")
    g.add_argument("--net-icp-max-dist", type=float, default=4.0,
                   help="ICP from the network's guess: coarse distance (m; bench/icp_gate.py)")  # fmt: skip
    g.add_argument("--min-fitness", type=float, default=0.6,
                   help="consistency check: accept ICP fitness >= this (0.6: bench/fitness_threshold.py)")  # fmt: skip
    g.add_argument("--fallback", action=argparse.BooleanOptionalAction, default=True,
                   help="try FPFH+RANSAC when the check fails (counted as fallback_rate)")  # fmt: skip


def _add_eval_pairs(sub: argparse._SubParsersAction) -> None:
    p = _parser(
        sub,
        "pairs",
        "Register every KITTI scan pair (i, i+g), g = 1..max-gap, from the identity and score RTE/RRE/success.",
        "dlc eval pairs --kitti ../shared/data/kitti_mini --sequences 01,02 --poses-name poses.txt --max-gap 9 "
        "--model models/lidar_dlc --json pairs.json",
    )
    p.add_argument("--kitti", required=True, help="KITTI odometry root (ROOT/sequences/SS/velodyne/*.bin)")
    p.add_argument("--sequences", type=_csv(str), default=["01", "02"], help="sequence ids (default 01,02)")
    p.add_argument("--poses-name", default=None, help="per-sequence pose file, e.g. poses.txt (default ROOT/poses/SS.txt)")
    p.add_argument("--max-gap", type=_positive_int, default=9)
    p.add_argument("--model", required=True, help="LiDAR model folder, or 'none' for ICP from the identity alone")
    _add_pipeline_flags(p)
    p.add_argument("--json", default=None, help="write the metrics JSON here (atomically)")
    _add_common(p)
    p.set_defaults(handler=_lazy("training.pairs", "evaluate"))


def _add_bag(verbs: argparse._SubParsersAction) -> None:
    bag = verbs.add_parser("bag", help="convert, evaluate (and play) ROS 2 bags", description="ROS 2 bag tools.")
    sub = bag.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = _parser(sub, "convert", "Write a KITTI sequence folder as a ROS 2 bag (PointCloud2 + ground-truth Odometry).",
                "dlc bag convert ../shared/data/kitti_mini/sequences/10 --out bags/seq10 --format mcap")  # fmt: skip
    p.add_argument("seq_dir", help="KITTI sequence folder: velodyne/*.bin, times.txt, calib.txt[, poses file]")
    p.add_argument("--out", required=True, help="bag folder to create (must not exist)")
    p.add_argument("--format", default="mcap", choices=("mcap", "sqlite3"), help="rosbag2 storage (default mcap)")
    p.add_argument("--poses-name", default="poses.txt", help="ground-truth pose file in the folder (default poses.txt)")
    p.add_argument("--max-frames", type=_positive_int, default=None, help="convert only the first N scans")
    p.set_defaults(handler=_lazy("dlc_ros.bag_io", "convert_command"))
    p = _parser(sub, "eval", "Replay a bag through the odometry pipeline offline and score it against its ground truth.",
                "dlc bag eval bags/sample --model models/lidar_dlc --out runs/sample_eval")  # fmt: skip
    p.add_argument("bag", help="rosbag2 folder (mcap or sqlite3)")
    p.add_argument("--model", required=True, help="LiDAR model folder, or 'none' for ICP alone")
    p.add_argument("--topic", default=None, help="PointCloud2 topic (default: the bag's only one)")
    p.add_argument("--out", required=True, help="folder for poses (KITTI, TUM), plots and metrics.json")
    p.add_argument("--json", default=None, help="metrics JSON path (default OUT/metrics.json)")
    p.add_argument("--allow-skips", action="store_true", help="exit 0 even when frames had to be skipped")
    _add_pipeline_flags(p)
    p.add_argument("--keyframe-distance", type=_float_in(0.0, 100.0), default=KEYFRAME_DISTANCE,
                   help=f"odometry: register onto a keyframe until moved this far (m; 0 = scan-to-scan; default "
                   f"{KEYFRAME_DISTANCE:g})")  # fmt: skip
    p.add_argument("--local-map-keyframes", type=_positive_int, default=LOCAL_MAP_KEYFRAMES,
                   help=f"odometry: register onto this many keyframes merged (1 = the newest alone; default "
                   f"{LOCAL_MAP_KEYFRAMES})")  # fmt: skip
    _add_common(p)
    p.set_defaults(handler=_lazy("dlc_ros.bag_eval", "evaluate"))
    p = _parser(sub, "play", "Publish a bag into the live ROS graph (a stand-in for ros2 bag play), after subscribers appear.",
                "dlc bag play bags/sample --rate 1.0 --loop")  # fmt: skip
    p.add_argument("bag", help="rosbag2 folder")
    p.add_argument("--rate", type=float, default=1.0, help="playback speed factor (default 1.0)")
    p.add_argument("--loop", action="store_true", help="play again from the start, stamps kept increasing")
    p.add_argument("--topics", type=_csv(str), default=None, help="only these topics (default all)")
    p.add_argument("--clock", action="store_true", help="publish /clock (rosgraph_msgs/Clock) from the bag time")
    p.add_argument("--wait-subscribers", type=float, default=10.0, help="seconds to wait for subscribers (0: none)")
    p.set_defaults(handler=_lazy("dlc_ros.bag_play", "run"))


def _add_sim(verbs: argparse._SubParsersAction) -> None:
    p = _parser(verbs, "sim", "Simulate HDL-64E-like LiDAR scans along a KITTI trajectory in a procedural street scene "
                "and write a KITTI-layout sequence with exact poses.",
                "dlc sim --out runs/sim/00 --trajectory ../shared/data/kitti_mini/poses_full_kitti_gt/00.txt --frames 200 --seed 0")  # fmt: skip
    p.add_argument("--out", required=True, metavar="DIR", help="output sequence folder (velodyne/, poses.txt, times.txt, "
                   "calib.txt, sim.json); new, empty or an earlier dlc sim output")  # fmt: skip
    p.add_argument("--trajectory", required=True, metavar="POSES.txt",
                   help="KITTI camera-0 poses, 12 numbers per line; frame i is line i*stride")  # fmt: skip
    p.add_argument("--calib", default=None, metavar="CALIB.txt",
                   help="KITTI calib.txt whose Tr maps Velodyne to camera 0 (default: the KITTI 04-10 calibration)")  # fmt: skip
    p.add_argument("--frames", type=_positive_int, required=True, help="number of scans to write")
    p.add_argument("--seed", type=int, default=0, help="scene and noise seed, >= 0 (default 0)")
    p.add_argument("--stride", type=_positive_int, default=1, help="use every K-th pose line (default 1)")
    p.set_defaults(handler=_lazy("dlc_core.sim.writer", "run"))


def _add_ros_verbs(verbs: argparse._SubParsersAction) -> None:
    """Verbs that start rclpy: dlc node ..., dlc bringup (dlc bag play is added with the other bag actions)."""
    node = verbs.add_parser("node", help="run a ROS 2 node", description="Run a dlc_ros ROS 2 node in this process.")
    kinds = node.add_subparsers(dest="node", required=True, metavar="NODE")
    p = _parser(kinds, "registration", "LiDAR odometry node: PointCloud2 in, Odometry/Path/diagnostics/TF out.",
                "dlc node registration --ros-args -p model_path:=models/lidar_dlc -r points:=/velodyne_points")  # fmt: skip
    p.add_argument("ros_args", nargs=argparse.REMAINDER, help="--ros-args ... (parameters, remappings)")
    p.set_defaults(handler=_lazy("dlc_ros.registration_node", "cli_main"))
    p = _parser(kinds, "lstm", "LSTM digit classifier node: sensor_msgs/Image in, class (Int32) and probabilities out; "
                "with --demo-source, a publisher of real MNIST digits runs beside it.",
                "dlc node lstm --demo-source ../shared/data/mnist_5k --rate 2")  # fmt: skip
    p.add_argument("--demo-source", default=None, metavar="DATA", help="MNIST folder or file: publish its test digits")
    p.add_argument("--rate", type=float, default=2.0, help="digits per second of the demo source (default 2)")
    p.add_argument("ros_args", nargs=argparse.REMAINDER, help="--ros-args ... (parameters, remappings)")
    p.set_defaults(handler=_lazy("dlc_ros.lstm_demo_node", "cli_main"))
    p = _parser(kinds, "homography", "Camera-to-map alignment node: camera Image in, homography (camera px -> map px), "
                "overlay and diagnostics out.",
                "dlc node homography --ros-args -p map_path:=map.jpg -p model_path:=sift -r camera/image:=/cam/image_raw")  # fmt: skip
    p.add_argument("ros_args", nargs=argparse.REMAINDER, help="--ros-args ... (parameters, remappings)")
    p.set_defaults(handler=_lazy("dlc_ros.homography_node", "cli_main"))
    p = _parser(verbs, "bringup", "Start the nodes named in a ROS 2 parameter file in one process.",
                "dlc bringup config/registration.yaml")  # fmt: skip
    p.add_argument("params", help="YAML parameter file: node_name: {ros__parameters: {...}}")
    p.add_argument("ros_args", nargs=argparse.REMAINDER, help="extra --ros-args ... for every node")
    p.set_defaults(handler=_lazy("dlc_ros.bringup", "run"))


def _add_landscape(verbs: argparse._SubParsersAction) -> None:
    p = _parser(verbs, "landscape", "Plot and score the loss landscape L_θ(p; x) around the truth (star-convexity), one "
                "model or two side by side.",
                "dlc landscape --model models/dcp_dlc_shapes --compare models/dcp_shapes --data shapes --samples 4 --out runs/landscape")  # fmt: skip
    p.add_argument("--model", required=True, help="model folder (model.pt + model_card.json)")
    p.add_argument("--compare", default=None, metavar="DIR2",
                   help="second model folder, drawn and reported beside the first (e.g. the no-DLC twin)")  # fmt: skip
    p.add_argument("--data", default="shapes", help="data SPEC: shapes | modelnet40:PATH | bunny:PATH (default shapes)")
    p.add_argument("--protocol", default="clean", choices=("clean", "noisy", "unseen", "partial"))
    p.add_argument("--samples", type=_positive_int, default=4, help="pairs, spread evenly over the evaluation set (default 4)")
    p.add_argument("--radius", type=float, default=3.0,
                   help="R in noise-σ units: rays and grid reach R σ from the truth (default 3 = 30 deg / 0.3 at σ 10 deg / 0.1)")  # fmt: skip
    p.add_argument("--rays", type=_positive_int, default=64, help="M random directions in the full chart (default 64)")
    p.add_argument("--ray-points", type=_positive_int, default=21, help="P samples per ray from 0 to R, >= 2 (default 21)")
    p.add_argument("--grid", type=_positive_int, default=41, help="G: G x G grid over --dims, >= 3 (default 41)")
    p.add_argument("--dims", default=None, metavar="A,B",
                   help="grid coordinates by name or index 0-5 (default euler_z,t_x; names euler_z/yaw, euler_y/pitch, "
                        "euler_x/roll, t_x, t_y, t_z)")  # fmt: skip
    p.add_argument("--landscape", default=None, choices=("label", "procrustes", "rerun"),
                   help="landscape kind (default: the card's; label for a no-DLC model)")  # fmt: skip
    p.add_argument("--mu", type=float, default=None, help="μ of the strong-ray envelope (default: the first DLC card's μ, else 0.1)")
    p.add_argument("--chunk", type=_positive_int, default=None,
                   help="points per landscape call (default label 8192, procrustes 1024, rerun 16)")  # fmt: skip
    p.add_argument("--out", required=True, help="folder for sample_NNNN.png and landscape.json")
    p.add_argument("--json", default=None, help="JSON path (default OUT/landscape.json)")
    _add_common(p)
    p.set_defaults(handler=_lazy("training.landscape", "run"))


def build_parser() -> argparse.ArgumentParser:
    """The full ``dlc`` argument parser."""
    parser = argparse.ArgumentParser(prog="dlc", description="Deep Loss Convexification for ROS 2: train, evaluate, run.")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    train = verbs.add_parser("train", help="train a model", description="Train a model with or without DLC.")
    train_tasks = train.add_subparsers(dest="task", required=True, metavar="TASK")
    _add_train_registration(train_tasks)
    _add_train_lstm(train_tasks)
    _add_train_homography(train_tasks)
    evaluate = verbs.add_parser("eval", help="evaluate a model", description="Evaluate a trained model.")
    eval_tasks = evaluate.add_subparsers(dest="task", required=True, metavar="TASK")
    _add_eval_registration(eval_tasks)
    _add_eval_pairs(eval_tasks)
    _add_eval_lstm(eval_tasks)
    _add_eval_homography(eval_tasks)
    _add_bag(verbs)
    _add_sim(verbs)
    _add_cache(verbs)
    _add_ros_verbs(verbs)
    _add_landscape(verbs)
    demo = _parser(verbs, "demo", "Replay the real sample bag with the shipped LiDAR models, then the shipped object "
                   "models on real bunny pairs; print the metrics tables (no training).", "dlc demo")  # fmt: skip
    demo.add_argument("--out", default="runs/demo", help="where the replay writes plots, poses and "
                      "metrics (default runs/demo)")  # fmt: skip
    _add_common(demo)
    demo.set_defaults(handler=_lazy("training.demo", "run"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, dispatch, and turn bad input into one line and exit code 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # ROS arguments go to rclpy untouched (argparse would take --ros-args for an unknown option after other flags).
    cut = argv.index("--ros-args") if "--ros-args" in argv else len(argv)
    parser = build_parser()
    args = parser.parse_args(argv[:cut])
    if cut < len(argv):
        if not hasattr(args, "ros_args"):
            parser.error(f"dlc {args.verb} takes no --ros-args")
        args.ros_args = [*args.ros_args, *argv[cut:]]
    args.command = " ".join(["dlc", *argv])
    from dlc_core.errors import InputError

    try:
        return int(args.handler(args) or 0)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
