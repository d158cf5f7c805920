"""`dlc sim`: drive the simulated LiDAR along a KITTI trajectory and write a KITTI-layout sequence.

The output folder is what the KITTI readers of the project take with ``poses_name="poses.txt"``:
``velodyne/NNNNNN.bin`` (float32 little-endian N x 4: x, y, z, reflectance in the Velodyne frame), ``poses.txt``
(the camera-0 pose lines used, verbatim), ``times.txt`` (0.1 s apart), ``calib.txt`` (P0-P3 and the Tr used) and
``sim.json`` (seed, sensor, command, counts, timings). The poses are exact: every point of scan i was cast from
T_velo_i = inv(Tr) @ P_i @ Tr, in a static world.

Every file is written atomically (temporary file + rename), scans first and sim.json last, so an interrupted run
leaves no truncated scan and a folder without sim.json is recognisably unfinished. A rerun may overwrite an earlier
(finished or not) output folder, whose extra scans it removes; any other non-empty folder is refused.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from dlc_core.atomic import atomic_path, write_json
from dlc_core.errors import InputError
from dlc_core.progress import progress
from dlc_core.sim.lidar import Sensor, scan
from dlc_core.sim.scene import RoadPath, UrbanWorld


# The calibration of KITTI odometry sequences 04-10, copied from ../shared/data/kitti_mini/sequences/10/calib.txt:
# P0-P3 (rectified camera projections) and Tr (Velodyne -> rectified camera 0). Used when no --calib is given.
KITTI_04_10_CALIB = """\
P0: 7.070912000000e+02 0.000000000000e+00 6.018873000000e+02 0.000000000000e+00 0.000000000000e+00 7.070912000000e+02 1.831104000000e+02 0.000000000000e+00 0.000000000000e+00 0.000000000000e+00 1.000000000000e+00 0.000000000000e+00
P1: 7.070912000000e+02 0.000000000000e+00 6.018873000000e+02 -3.798145000000e+02 0.000000000000e+00 7.070912000000e+02 1.831104000000e+02 0.000000000000e+00 0.000000000000e+00 0.000000000000e+00 1.000000000000e+00 0.000000000000e+00
P2: 7.070912000000e+02 0.000000000000e+00 6.018873000000e+02 4.688783000000e+01 0.000000000000e+00 7.070912000000e+02 1.831104000000e+02 1.178601000000e-01 0.000000000000e+00 0.000000000000e+00 1.000000000000e+00 6.203223000000e-03
P3: 7.070912000000e+02 0.000000000000e+00 6.018873000000e+02 -3.334597000000e+02 0.000000000000e+00 7.070912000000e+02 1.831104000000e+02 1.930130000000e+00 0.000000000000e+00 0.000000000000e+00 1.000000000000e+00 3.318498000000e-03
Tr: -1.857739385241e-03 -9.999659513510e-01 -8.039975204516e-03 -4.784029760483e-03 -6.481465826011e-03 8.051860151134e-03 -9.999466081774e-01 -7.337429464231e-02 9.999773098287e-01 -1.805528627661e-03 -6.496203536139e-03 -3.339968064433e-01
"""  # noqa: E501
PLACEHOLDER_P = " ".join(f"{v:.12e}" for v in (1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0))
SCAN_PERIOD_S = 0.1
OUTPUT_NAMES = {"velodyne", "poses.txt", "times.txt", "calib.txt", "sim.json"}


@dataclass
class Calibration:
    """The lines of a KITTI calib.txt this simulator writes (P0-P3 and Tr, verbatim) and Tr as a 4x4 matrix."""

    lines: list[str]
    tr: np.ndarray
    source: str


def matrix_from_line(text: str, where: str) -> np.ndarray:
    """A 4x4 homogeneous matrix from the 12 row-major numbers of a KITTI pose or calib line."""
    try:
        values = [float(v) for v in text.split()]
    except ValueError:
        raise InputError(f"{where}: expected 12 numbers, got {text.strip()[:60]!r}") from None
    if len(values) != 12 or not np.all(np.isfinite(values)):
        raise InputError(f"{where}: expected 12 finite numbers, got {len(values)}")
    return np.vstack([np.reshape(values, (3, 4)), [0.0, 0.0, 0.0, 1.0]])


def parse_calib(text: str, source: str) -> Calibration:
    """P0-P3 (placeholders for those missing) and the Tr line of a KITTI odometry calib.txt."""
    rows = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    if "Tr" not in rows:
        raise InputError(f"{source}: no 'Tr:' line (the Velodyne -> camera-0 transform)")
    tr = matrix_from_line(rows["Tr"], f"{source}: Tr")
    lines = [f"{name}: {rows[name].strip() if name in rows else PLACEHOLDER_P}" for name in ("P0", "P1", "P2", "P3")]
    return Calibration(lines + [f"Tr: {rows['Tr'].strip()}"], tr, source)


def load_calib(path: Path | None) -> Calibration:
    """The calibration in `path`, or KITTI 04-10's when None (announced on stdout)."""
    if path is None:
        print("no --calib given: using the KITTI odometry 04-10 calibration (its Tr maps Velodyne to camera 0)")
        return parse_calib(KITTI_04_10_CALIB, "KITTI 04-10 (built in)")
    try:
        return parse_calib(Path(path).read_text(), str(path))
    except OSError as exc:
        raise InputError(f"{path}: cannot read the calibration ({exc.strerror})") from None


def load_trajectory(path: Path, frames: int, stride: int) -> list[str]:
    """The pose lines up to the last one used (frame i is line i * stride); warns when the file has more."""
    if frames < 1 or stride < 1:
        raise InputError(f"--frames and --stride must be >= 1, got {frames} and {stride}")
    try:
        lines = [line.rstrip("\r\n") for line in Path(path).read_text().splitlines()]
    except OSError as exc:
        raise InputError(f"{path}: cannot read the trajectory ({exc.strerror})") from None
    while lines and not lines[-1].strip():
        lines.pop()
    needed = (frames - 1) * stride + 1
    if len(lines) < needed:
        raise InputError(f"{path}: has {len(lines)} poses, but --frames {frames} --stride {stride} needs {needed}")
    if len(lines) > needed:
        rule = "line i" if stride == 1 else f"line i*{stride}"
        print(f"warning: {path} has {len(lines)} poses; using the first {needed} (frame i = {rule})", file=sys.stderr)
    return lines[:needed]


def velodyne_poses(lines: Sequence[str], tr: np.ndarray, source: str) -> np.ndarray:
    """Velodyne poses T_velo = inv(Tr) @ P @ Tr (N, 4, 4) from KITTI camera-0 pose lines."""
    camera = np.stack([matrix_from_line(line, f"{source}: line {i + 1}") for i, line in enumerate(lines)])
    return np.linalg.inv(tr) @ camera @ tr


def build_world(poses: np.ndarray, seed: int, sensor: Sensor) -> UrbanWorld:
    """The procedural world around a trajectory of Velodyne poses (N, 4, 4): the road runs under every pose."""
    footprints = poses[:, :3, 3] - sensor.height * poses[:, :3, 2]
    return UrbanWorld(RoadPath(footprints, poses[0, :3, 0], poses[-1, :3, 0], seed), seed, sensor.max_range)


def drive(poses: np.ndarray, frames: Sequence[int], seed: int, sensor: Sensor, noisy: bool = True
          ) -> Iterator[np.ndarray]:
    """Scans (N, 4) float32 at poses[frames], in a world generated around all of `poses` (Velodyne frame)."""
    world = build_world(poses, seed, sensor)
    for frame in frames:
        rng = np.random.default_rng([seed, 5, frame]) if noisy else None
        yield scan(world.scene_at(poses[frame, :3, 3]), poses[frame], sensor, rng)


def simulate_sequence(out: Path, trajectory: Path, calib: Path | None, frames: int, seed: int, stride: int,
                      sensor: Sensor, command: str) -> dict[str, object]:
    """Write the KITTI-layout sequence into `out` and return what went into its sim.json."""
    if seed < 0:
        raise InputError(f"--seed must be >= 0, got {seed}")
    _check_out(out)
    calibration = load_calib(calib)
    lines = load_trajectory(trajectory, frames, stride)
    poses = velodyne_poses(lines, calibration.tr, str(trajectory))
    (out / "sim.json").unlink(missing_ok=True)  # the folder is unfinished until the new sim.json is written
    used = list(range(0, len(lines), stride))
    started, counts = time.perf_counter(), []
    scans = drive(poses, used, seed, sensor)
    for i, points in enumerate(progress(scans, len(used), "dlc sim")):
        with atomic_path(out / "velodyne" / f"{i:06d}.bin") as tmp:
            points.astype("<f4").tofile(tmp)
        counts.append(len(points))
    elapsed = time.perf_counter() - started
    _remove_stale_scans(out, len(used))
    _write_text(out / "poses.txt", [lines[j] for j in used])
    _write_text(out / "times.txt", [f"{i * SCAN_PERIOD_S:.6e}" for i in range(len(used))])
    _write_text(out / "calib.txt", calibration.lines)
    summary = {
        "format_version": 1,
        "seed": seed,
        "frames": len(used),
        "stride": stride,
        "trajectory": str(trajectory),
        "calib": calibration.source,
        "sensor": sensor.as_dict(),
        "points": {"total": int(sum(counts)), "per_frame_mean": float(np.mean(counts)),
                   "per_frame_min": int(min(counts)), "per_frame_max": int(max(counts))},
        "time_s": {"total": elapsed, "per_frame_mean": elapsed / len(used)},
        "command": command,
        "date": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
    }
    write_json(out / "sim.json", summary)
    return summary


def run(args: argparse.Namespace) -> int:
    """The `dlc sim` verb: simulate, write, and print one summary line."""
    command = getattr(args, "command", None) or " ".join(["dlc", *sys.argv[1:]])
    calib = Path(args.calib) if args.calib else None
    summary = simulate_sequence(Path(args.out), Path(args.trajectory), calib, args.frames,
                                args.seed, args.stride, Sensor(), command)
    points, seconds = summary["points"], summary["time_s"]
    print(f"wrote {summary['frames']} scans to {args.out} ({points['per_frame_mean']:.0f} points per scan, "
          f"{seconds['per_frame_mean']:.2f} s per scan)")
    return 0


def _check_out(out: Path) -> None:
    """Refuse to write into a folder holding anything but an earlier (possibly unfinished) `dlc sim` output."""
    if out.exists() and (not out.is_dir() or any(p.name not in OUTPUT_NAMES for p in out.iterdir())):
        raise InputError(f"{out}: exists and is not an earlier dlc sim output; choose a new or empty folder")


def _remove_stale_scans(out: Path, frames: int) -> None:
    """Delete scans left by an earlier, longer run into the same folder."""
    for path in (out / "velodyne").glob("*.bin"):
        if not path.stem.isdigit() or int(path.stem) >= frames:
            path.unlink()


def _write_text(path: Path, lines: Iterable[str]) -> None:
    """Write lines (newline-terminated) atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text("".join(f"{line}\n" for line in lines))


