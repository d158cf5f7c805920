"""KITTI odometry reader: Velodyne scans, calibration, timestamps and ground-truth poses of one sequence.

Layouts (``ROOT`` is the folder that holds ``sequences/``):

- standard KITTI odometry: ``ROOT/sequences/SS/velodyne/NNNNNN.bin``, ``ROOT/sequences/SS/calib.txt``,
  ``ROOT/sequences/SS/times.txt`` and the ground truth in ``ROOT/poses/SS.txt`` (absent for sequences 11-21: the
  poses are then None);
- a per-sequence pose file, as in ``shared/data/kitti_mini``: ``ROOT/sequences/SS/<poses_name>`` (the CLI's
  ``--poses-name F``), used instead of ``ROOT/poses/SS.txt`` when ``poses_name`` is given (and then required).

Frames are numbered by their file names (``000042.bin`` is frame 42) and kept in sorted order; "index k" below is
the k-th scan in that order. Line matching of pose and time files:

- as many lines as scans: line k belongs to the k-th scan (the kitti_mini ``poses.txt``/``times.txt`` convention);
- more lines than scans: line n belongs to frame n (the official files start at frame 0), so a gap in the frame
  numbering (``missing_frames``) does not shift them; a frame number beyond the file is an error;
- fewer lines than scans: an error.

Pose convention (verified on the scans, see ``shared/data/kitti_mini/README.md``): a pose line is the row-major 3x4
matrix P_i that maps camera-0 coordinates of frame i into camera-0 coordinates of frame 0. With Tr the 4x4
Velodyne -> camera-0 transform from ``calib.txt``, the Velodyne poses are ``T_velo_i = inv(Tr) @ P_i @ Tr`` and
``T_j_to_i = inv(T_velo_i) @ T_velo_j`` maps points of scan j into the frame of scan i. Every pose this module hands
out (``KittiSequence.poses``, ``pose``, ``relative``) is a Velodyne-frame pose; only ``read_poses`` returns the raw
camera-frame P_i.

Scans are float32 (N, 4) arrays (x, y, z, reflectance; metres, x forward, y left, z up), returned as stored: NaN/Inf
rows are kept and ``finite_points`` drops them where the caller wants that. All other arrays are float64.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlc_core.errors import InputError

_BYTES_PER_POINT = 16  # 4 little-endian float32: x, y, z, reflectance
_ROTATION_TOLERANCE = 1e-3  # max |R R^T - I|: KITTI files print 7 significant digits (about 1e-6)
_LAYOUT = "ROOT/sequences/SS/velodyne/NNNNNN.bin"


def read_velodyne_bin(path: str | Path) -> np.ndarray:
    """One Velodyne scan as a float32 (N, 4) array (x, y, z, reflectance); an empty file is an empty scan."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read Velodyne scan ({exc.strerror})") from None
    if len(raw) % _BYTES_PER_POINT:
        raise InputError(
            f"{path} is {len(raw)} bytes, not a multiple of {_BYTES_PER_POINT} (4 float32 per point): "
            "truncated or not a KITTI scan"
        )
    return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(-1, 4)  # a native, writable copy


def finite_points(scan: np.ndarray) -> tuple[np.ndarray, int]:
    """The rows of a scan whose values are all finite, and how many rows were dropped (pipelines skip NaN/Inf)."""
    keep = np.isfinite(scan).all(axis=1)
    return scan[keep], int(len(scan) - keep.sum())


def read_calib(path: str | Path) -> np.ndarray:
    """The 4x4 Velodyne -> camera-0 transform Tr from the ``Tr:`` line (12 numbers) of a KITTI ``calib.txt``."""
    path = Path(path)
    found = [
        (number, line.split(":", 1)[1])
        for number, line in enumerate(_read_lines(path, "calibration file"), start=1)
        if line.split(":", 1)[0].strip() == "Tr"
    ]
    if not found:
        raise InputError(f"{path}: no 'Tr:' line (expected 'Tr: ' and 12 numbers, the Velodyne -> camera-0 transform)")
    if len(found) > 1:
        raise InputError(f"{path}:{found[1][0]}: a second 'Tr:' line (the first is line {found[0][0]})")
    number, text = found[0]
    tr = _to_4x4(_parse_numbers(path, number, text, 12, "the Tr line"))
    _check_rotations(path, tr[None], number, "the Tr line")
    return tr


def read_poses(path: str | Path) -> np.ndarray:
    """The (N, 4, 4) camera-frame poses P_i of a KITTI pose file (12 numbers per line: a row-major 3x4 matrix)."""
    poses = _to_4x4(_read_table(Path(path), 12, "pose"))
    _check_rotations(Path(path), poses, 1, "pose line")
    return poses


def read_times(path: str | Path) -> np.ndarray:
    """The (N,) scan timestamps in seconds of a KITTI ``times.txt`` (one number per line)."""
    return _read_table(Path(path), 1, "timestamp").reshape(-1)


def camera_to_velodyne(poses_cam: np.ndarray, tr: np.ndarray) -> np.ndarray:
    """Velodyne-frame poses T_velo_i = inv(Tr) @ P_i @ Tr from camera-0 poses P_i ((N, 4, 4) or one 4x4)."""
    return np.linalg.inv(tr) @ np.asarray(poses_cam, dtype=np.float64) @ tr


def relative_transform(poses: np.ndarray, i: int, j: int) -> np.ndarray:
    """The 4x4 transform inv(T_i) @ T_j that maps points of scan j into the frame of scan i."""
    return np.linalg.inv(poses[i]) @ poses[j]


def sequences(root: str | Path) -> list[str]:
    """The sequence ids (folder names under ``ROOT/sequences``) of a KITTI odometry tree, sorted."""
    folder = Path(root) / "sequences"
    if not folder.is_dir():
        raise InputError(f"{folder}: folder not found (expected the KITTI odometry layout {_LAYOUT})")
    return sorted(entry.name for entry in folder.iterdir() if entry.is_dir())


@dataclass
class KittiSequence:
    """One KITTI odometry sequence: its scan files, frame numbers, Tr, and (optional) timestamps and Velodyne poses."""

    root: Path
    sequence: str
    folder: Path
    frames: list[int]
    scan_paths: list[Path]
    times: np.ndarray | None
    tr: np.ndarray
    poses: np.ndarray | None

    @classmethod
    def open(cls, root: str | Path, sequence: str, poses_name: str | None = None) -> KittiSequence:
        """Index sequence ``sequence`` under ``root`` (scans are read lazily); see the module docstring for rules."""
        root = Path(root)
        folder = _sequence_folder(root, sequence)
        pose_path = folder / poses_name if poses_name is not None else root / "poses" / f"{sequence}.txt"
        if poses_name is not None and not pose_path.is_file():
            raise InputError(f"{pose_path}: pose file not found (asked for by the pose file name {poses_name!r})")
        return cls._read(root, sequence, folder, pose_path)

    @classmethod
    def open_folder(cls, folder: str | Path, poses_name: str = "poses.txt") -> KittiSequence:
        """A single sequence folder (velodyne/, calib.txt, optional times.txt and pose file), e.g. ``dlc sim`` output."""
        folder = Path(folder)
        if not (folder / "velodyne").is_dir():
            raise InputError(f"{folder}: not a KITTI sequence folder (expected {folder / 'velodyne'}/NNNNNN.bin)")
        return cls._read(folder.parent, folder.name, folder, folder / poses_name)

    @classmethod
    def _read(cls, root: Path, sequence: str, folder: Path, pose_path: Path) -> KittiSequence:
        frames, scan_paths = _scan_files(folder / "velodyne")
        tr = read_calib(folder / "calib.txt")
        poses = None
        if pose_path.is_file():
            poses = camera_to_velodyne(_align_to_frames(read_poses(pose_path), frames, pose_path, "pose"), tr)
        times_path = folder / "times.txt"
        times = _align_to_frames(read_times(times_path), frames, times_path, "time") if times_path.is_file() else None
        return cls(root, sequence, folder, frames, scan_paths, times, tr, poses)

    def __len__(self) -> int:
        """Number of scans present."""
        return len(self.frames)

    def scan(self, k: int) -> np.ndarray:
        """The float32 (N, 4) scan of the k-th frame in file order."""
        return read_velodyne_bin(self.scan_paths[k])

    def pose(self, k: int) -> np.ndarray:
        """The 4x4 Velodyne-frame pose of the k-th frame (in the frame of Velodyne scan 0 of the sequence)."""
        return self._require_poses()[k]

    def relative(self, k_target: int, k_source: int) -> np.ndarray:
        """The 4x4 ground truth mapping points of scan k_source into the frame of scan k_target."""
        return relative_transform(self._require_poses(), k_target, k_source)

    def missing_frames(self) -> list[int]:
        """Frame numbers absent inside the numbered range (first..last frame), so callers can report or skip them."""
        present = set(self.frames)
        return [frame for frame in range(self.frames[0], self.frames[-1] + 1) if frame not in present]

    def _require_poses(self) -> np.ndarray:
        if self.poses is None:
            raise InputError(
                f"sequence {self.sequence} under {self.root} has no ground-truth poses "
                f"(expected {self.root / 'poses' / (self.sequence + '.txt')} or a per-sequence pose file name)"
            )
        return self.poses


def _sequence_folder(root: Path, sequence: str) -> Path:
    """ROOT/sequences/SS, or InputError listing the sequences that do exist."""
    available = sequences(root)
    folder = root / "sequences" / sequence
    if sequence not in available:
        listed = ", ".join(available) if available else "none"
        raise InputError(f"{folder}: sequence {sequence!r} not found (sequences under {root / 'sequences'}: {listed})")
    return folder


def _scan_files(velodyne: Path) -> tuple[list[int], list[Path]]:
    """Frame numbers and paths of the ``NNNNNN.bin`` files of a velodyne folder, sorted by frame number."""
    if not velodyne.is_dir():
        raise InputError(f"{velodyne}: velodyne folder not found (expected the KITTI layout {_LAYOUT})")
    paths = [path for path in velodyne.iterdir() if path.suffix == ".bin"]
    for path in paths:
        if not path.stem.isdigit():
            raise InputError(f"{path}: scan file name is not a frame number (expected NNNNNN.bin)")
    if not paths:
        raise InputError(f"{velodyne}: no .bin scans (expected the KITTI layout {_LAYOUT})")
    paths.sort(key=lambda path: int(path.stem))
    frames = [int(path.stem) for path in paths]
    for previous, path, frame in zip(paths, paths[1:], frames[1:]):
        if int(previous.stem) == frame:
            raise InputError(f"{path}: frame {frame} is also in {previous.name} (one file per frame number)")
    return frames, paths


def _align_to_frames(rows: np.ndarray, frames: list[int], path: Path, what: str) -> np.ndarray:
    """The rows of a pose/time file that belong to the scans, one per frame (line matching rules: module docstring)."""
    if len(rows) < len(frames):
        raise InputError(f"{path} has {len(rows)} {what} lines but there are {len(frames)} scans: too few lines")
    if len(rows) == len(frames):
        return rows
    if frames[-1] >= len(rows):
        raise InputError(
            f"{path} has {len(rows)} {what} lines (line n = frame n) but the scans go up to frame {frames[-1]}"
        )
    return rows[frames]


def _read_lines(path: Path, what: str) -> list[str]:
    try:
        return path.read_text(encoding="ascii").splitlines()
    except FileNotFoundError:
        raise InputError(f"{path}: {what} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read {what} ({exc})") from None


def _read_table(path: Path, width: int, what: str) -> np.ndarray:
    """An (N, width) float64 table, one line per row; trailing blank lines are allowed, inner ones are not."""
    lines = _read_lines(path, f"{what} file")
    while lines and not lines[-1].strip():
        lines.pop()
    rows = [_parse_numbers(path, number, line, width, f"a {what} line") for number, line in enumerate(lines, start=1)]
    return np.array(rows, dtype=np.float64).reshape(-1, width)


def _parse_numbers(path: Path, number: int, text: str, count: int, what: str) -> list[float]:
    """Exactly ``count`` finite numbers from one line, or InputError ``file:line: ...``."""
    words = text.split()
    if len(words) != count:
        raise InputError(f"{path}:{number}: {what} needs {count} numbers, found {len(words)}")
    try:
        values = [float(word) for word in words]
    except ValueError:
        raise InputError(f"{path}:{number}: {what} has a non-numeric value: {text.strip()[:80]!r}") from None
    if not np.isfinite(values).all():
        raise InputError(f"{path}:{number}: {what} contains NaN or Inf")
    return values


def _to_4x4(rows: np.ndarray) -> np.ndarray:
    """Row-major 3x4 matrices (12 numbers each, shape (..., 12)) as homogeneous 4x4 matrices."""
    rows = np.asarray(rows, dtype=np.float64)
    out = np.zeros(rows.shape[:-1] + (4, 4))
    out[..., :3, :] = rows.reshape(rows.shape[:-1] + (3, 4))
    out[..., 3, 3] = 1.0
    return out



def _check_rotations(path: Path, matrices: np.ndarray, first_line: int, what: str) -> None:
    """InputError ``file:line`` for the first matrix whose 3x3 block is not a rotation (orthonormal, det +1)."""
    rotations = matrices[:, :3, :3]
    error = np.abs(rotations @ rotations.transpose(0, 2, 1) - np.eye(3)).max(axis=(1, 2), initial=0.0)
    bad = (error > _ROTATION_TOLERANCE) | (np.linalg.det(rotations) < 0)
    if bad.any():
        k = int(bad.argmax())
        raise InputError(
            f"{path}:{first_line + k}: {what} is not a rigid transform (max |R R^T - I| = {error[k]:.2g}, "
            f"det R = {np.linalg.det(rotations[k]):.3g})"
        )
