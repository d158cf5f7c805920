"""The pipeline's run-time settings for isolated pairs — the method and first correspondence gate of the ICP from the
network's guess, the network passes, the fallback — chosen on simulated pairs that neither training nor the
wide-baseline evaluation uses: `dlc eval pairs --net-icp M --net-icp-max-dist G --iters P --[no-]fallback` for every
combination asked for, on a stretch of a held-out simulated drive taken every `--stride` frames (so gaps 1-9 span
wide baselines). "none" (no network) runs the pipeline's ICP from the identity, once per fallback setting.

    python bench/icp_gate.py --sim runs/sim_long/02 --methods point-to-plane,gicp --gates 2,4
    python bench/icp_gate.py --methods gicp --gates 4 --passes 5,3 --fallback off,on --json bench/results/icp_gate_passes.json

The drive is `dlc sim --trajectory ../shared/data/kitti_mini/poses_full_kitti_gt/02.txt --frames 3000 --seed 11`
(README, long run): a trajectory and a seed no training run used.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shlex
import shutil
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.experiment_common import DLC, run, run_root  # noqa: E402
from dlc_core.atomic import write_json  # noqa: E402
from training import common  # noqa: E402


def select_frames(sim: Path, frames: list[int], root: Path) -> Path:
    """A KITTI root holding sequence 00 = the chosen frames of the simulated sequence (scans linked, poses and
    times cut to match, calib copied)."""
    seq = root / "sequences" / "00"
    if seq.exists():
        shutil.rmtree(seq)
    (seq / "velodyne").mkdir(parents=True)
    poses, times = (np.loadtxt(sim / name, ndmin=1) for name in ("poses.txt", "times.txt"))
    for i, frame in enumerate(frames):
        (seq / "velodyne" / f"{i:06d}.bin").symlink_to((sim / "velodyne" / f"{frame:06d}.bin").resolve())
    np.savetxt(seq / "poses.txt", poses[frames], fmt="%.9e")
    np.savetxt(seq / "times.txt", times[frames], fmt="%.6f")
    shutil.copy(sim / "calib.txt", seq / "calib.txt")
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sim", default="runs/sim_long/02", help="a simulated sequence folder (dlc sim)")
    parser.add_argument("--start", type=int, default=1000)
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--stride", type=int, default=2, help="every stride-th scan: 0.6 m per scan becomes ~1.2 m")
    parser.add_argument("--methods", default="point-to-plane,gicp",
                        help="methods of the ICP from the network's guess to compare (dlc eval pairs --net-icp)")  # fmt: skip
    parser.add_argument("--gates", default="2,4", help="first gates of the ICP from the network's guess to compare (m)")
    parser.add_argument("--passes", default="", help="network passes to compare (dlc eval pairs --iters; '' = the card's)")
    parser.add_argument("--fallback", default="off", help="'off', 'on' or 'off,on': without / with the global fallback")
    parser.add_argument("--models", default="models/lidar_dlc,models/lidar_nodlc,none")
    parser.add_argument("--max-gap", type=int, default=9)
    parser.add_argument("--runs", default=str(REPO / "runs"))
    parser.add_argument("--json", default=str(REPO / "bench/results/icp_gate.json"))
    args = parser.parse_args()
    root = run_root(args.runs, "icp_gate")
    frames = list(range(args.start, args.start + args.frames * args.stride, args.stride))
    kitti = select_frames(Path(args.sim), frames, root / "kitti")
    rows = []
    for model, fallback in itertools.product(args.models.split(","), args.fallback.split(",")):
        network = [""] if model == "none" else None  # no network: none of the network's settings is used
        grid = itertools.product(network or args.methods.split(","), network or args.gates.split(","),
                                 network or args.passes.split(","))  # fmt: skip
        for method, gate, passes in grid:
            out = root / f"{Path(model).name}_{method}_g{gate}_p{passes}_{fallback}.json"
            run(DLC + ["eval", "pairs", "--kitti", str(kitti), "--sequences", "00", "--poses-name", "poses.txt",
                       "--max-gap", str(args.max_gap), "--model", model, *(["--net-icp", method] if method else []),
                       "--fallback" if fallback == "on" else "--no-fallback", *(["--net-icp-max-dist", gate] if gate else []),
                       *(["--iters", passes] if passes else []), "--json", str(out)], root / "eval.log")  # fmt: skip
            r = json.loads(out.read_text())
            rows.append({"model": model, "icp": r["pipeline"]["icp"], "net_icp": method or None,
                         "net_icp_max_dist": r["pipeline"]["net_icp_max_dist"] if gate else None,
                         "passes": r["pipeline"]["passes"] if model != "none" else None, "fallback": fallback == "on",
                         "success_rate": r["success_rate"], "fallback_rate": r["fallback_rate"],
                         "time_ms_median": r["time_ms"]["median"], "pairs": r["pairs"],
                         "per_gap": {g: v["success_rate"] for g, v in r["per_gap"].items()}})  # fmt: skip
            print(f"{model:>22} {method or '-':>14} gate {gate or '-':>2} m  passes {rows[-1]['passes'] or '-'}  fallback {fallback:>3}: "
                  f"success {100 * r['success_rate']:.1f}% (fallback {100 * r['fallback_rate']:.1f}%)  median "
                  f"{r['time_ms']['median']:.0f} ms  per gap {[round(100 * v) for v in rows[-1]['per_gap'].values()]}",
                  flush=True)  # fmt: skip
    write_json(args.json, {"benchmark": "icp_gate", "command": "python " + shlex.join(sys.argv), "date": common.now_iso(),
                           "machine": common.machine(), "data": f"{args.sim} frames {frames[0]}-{frames[-1]} every {args.stride}",
                           "git_commit": common.git_commit(), "results": rows})  # fmt: skip
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
