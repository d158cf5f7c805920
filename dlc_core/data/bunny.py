"""The Stanford Bunny range scans: a PLY point reader, the ``bun.conf`` pose file, and ground-truth scan pairs.

The data (ten Cyberware range scans plus ``bun.conf``; see ``shared/data/bunny/README.md``) is in metres. Every
reader takes a path argument: nothing here knows where the data lives.

Scans are named by their file stem (``"bun000"`` for ``bun000.ply``) everywhere in this module: the keys of
``read_conf``, the names in ``BUNNY_PAIRS``, the arguments of ``pair_transform`` and ``load_scans``.

``bun.conf`` convention (verified numerically, see the README): a line ``bmesh <file> tx ty tz qx qy qz qw`` maps
the scan into the world frame as ``p_world = R @ p_scan + t`` with
``R = Rotation.from_quat([qx, qy, qz, qw]).as_matrix().T`` (the stored quaternion is world-to-scan).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from dlc_core.errors import InputError

CONF_NAME = "bun.conf"

# (target, source) pairs: the ground truth maps source scan points into the target scan frame. Chosen from all 90
# ordered pairs as those whose bun.conf relative rotation is <= 50 deg and whose overlap is >= 50 %. Measured from
# bun.conf: relative rotation angle, norm of the relative translation, and overlap = fraction of source points whose
# nearest target point (after applying the ground truth) is closer than 2 mm.
# Near misses left out: bun045<-bun090 (55.9 deg, 66.7 %), bun000<-chin (58.7 deg, 51.5 %), bun315<-chin (55.6 deg,
# 58.5 %), chin<-bun315 (55.6 deg, 71.7 %). bun000<-top3 overlaps 66.2 % but is 146.4 deg apart.
BUNNY_PAIRS: tuple[tuple[str, str], ...] = (
    ("bun000", "bun045"),  # 34.3 deg,  53.2 mm, overlap 93.8 %
    ("bun045", "bun000"),  # 34.3 deg,  53.2 mm, overlap 92.0 %
    ("bun000", "bun315"),  # 45.2 deg,  14.4 mm, overlap 84.3 %
    ("bun315", "bun000"),  # 45.2 deg,  14.4 mm, overlap 82.9 %
    ("bun270", "bun315"),  # 44.8 deg,  14.9 mm, overlap 67.3 %
    ("bun315", "bun270"),  # 44.8 deg,  14.9 mm, overlap 74.2 %
    ("bun180", "ear_back"),  # 44.5 deg, 114.9 mm, overlap 92.6 %
    ("ear_back", "bun180"),  # 44.5 deg, 114.9 mm, overlap 83.4 %
)

_FLOAT_TYPES = {"float": "f4", "float32": "f4", "double": "f8", "float64": "f8"}
_BINARY_FORMATS = {"binary_little_endian": "<"}


def read_ply_xyz(path: str | Path) -> np.ndarray:
    """The x, y, z vertex coordinates of a PLY file as an (N, 3) float64 array.

    Supports ``ascii`` and ``binary_little_endian`` PLY whose first element is ``vertex`` with scalar float/double
    properties including x, y and z; later elements (e.g. the range grid of the original scans) are ignored.
    Raises InputError naming the file for a missing/garbled header, an unsupported format or property type, a
    truncated body or a vertex count that does not match the data.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read PLY file ({exc.strerror})") from exc
    fmt, count, props, only_element, body = _parse_header(path, raw)
    if fmt == "ascii":
        table = _read_ascii_vertices(path, body, count, len(props), only_element)
    else:
        table = _read_binary_vertices(path, body, count, props, _BINARY_FORMATS[fmt], only_element)
    names = [name for name, _ in props]
    return table[:, [names.index(axis) for axis in "xyz"]].astype(np.float64)


def _parse_header(path: Path, raw: bytes) -> tuple[str, int, list[tuple[str, str]], bool, bytes]:
    """(format, vertex count, vertex (name, type) list, whether vertex is the only element, body bytes)."""
    lines, body_start = _header_lines(path, raw)
    fmt = None
    elements: list[tuple[str, str, list[tuple[str, str]]]] = []  # (name, count text, properties)
    for number, line in enumerate(lines[1:], start=2):
        words = line.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "format" and len(words) == 3:
            fmt = words[1]
        elif words[0] == "element" and len(words) == 3:
            elements.append((words[1], words[2], []))
        elif words[0] == "property" and len(words) >= 3 and elements:
            elements[-1][2].append((words[-1], " ".join(words[1:-1])))
        else:
            raise InputError(f"{path}: malformed PLY header line {number}: {line.strip()!r}")
    if fmt != "ascii" and fmt not in _BINARY_FORMATS:
        raise InputError(f"{path}: unsupported PLY format {fmt!r} (expected ascii or binary_little_endian)")
    if not elements or elements[0][0] != "vertex":
        raise InputError(f"{path}: the first PLY element must be 'vertex'")
    _, count_text, props = elements[0]
    if not count_text.isdigit():
        raise InputError(f"{path}: invalid vertex count {count_text!r}")
    _check_vertex_properties(path, props)
    return fmt, int(count_text), props, len(elements) == 1, raw[body_start:]


def _header_lines(path: Path, raw: bytes) -> tuple[list[str], int]:
    """The header lines from 'ply' up to (without) 'end_header', and the offset of the first body byte."""
    lines: list[str] = []
    start = 0
    while (newline := raw.find(b"\n", start)) >= 0:
        try:
            line = raw[start:newline].decode("ascii").rstrip("\r")
        except UnicodeDecodeError as exc:
            raise InputError(f"{path}: PLY header line {len(lines) + 1} is not ASCII text") from exc
        start = newline + 1
        if not lines and line.strip() != "ply":
            raise InputError(f"{path}: not a PLY file (the first line is not 'ply')")
        if line.strip() == "end_header":
            return lines, start
        lines.append(line)
    if not lines and not raw.startswith(b"ply"):
        raise InputError(f"{path}: not a PLY file (the first line is not 'ply')")
    raise InputError(f"{path}: PLY header has no 'end_header' line (missing or truncated header)")


def _check_vertex_properties(path: Path, props: list[tuple[str, str]]) -> None:
    names = [name for name, _ in props]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise InputError(f"{path}: vertex property {repeated[0]!r} is declared more than once")
    for name, kind in props:
        if kind not in _FLOAT_TYPES:
            raise InputError(f"{path}: vertex property {name!r} has type {kind!r}; only float/double are supported")
    missing = [axis for axis in "xyz" if axis not in names]
    if missing:
        raise InputError(f"{path}: vertex element lacks propert{'y' if len(missing) == 1 else 'ies'} {missing}")


def _read_binary_vertices(
    path: Path, body: bytes, count: int, props: list[tuple[str, str]], order: str, only_element: bool
) -> np.ndarray:
    dtype = np.dtype([(name, order + _FLOAT_TYPES[kind]) for name, kind in props])
    needed = count * dtype.itemsize
    if len(body) < needed:
        raise InputError(
            f"{path}: truncated PLY data: {count} vertices need {needed} bytes, the file has {len(body)}"
        )
    if only_element and len(body) != needed:
        raise InputError(
            f"{path}: wrong vertex count: header says {count} vertices ({needed} bytes) but the data has "
            f"{len(body)} bytes"
        )
    records = np.frombuffer(body, dtype=dtype, count=count)
    return np.stack([records[name].astype(np.float64) for name, _ in props], axis=1)


def _read_ascii_vertices(path: Path, body: bytes, count: int, width: int, only_element: bool) -> np.ndarray:
    try:
        lines = [line for line in body.decode("ascii").splitlines() if line.strip()]
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: ASCII PLY body contains non-ASCII bytes") from exc
    if len(lines) < count or (only_element and len(lines) != count):
        raise InputError(f"{path}: wrong vertex count: header says {count} vertices, the file has {len(lines)} lines")
    rows = lines[:count]
    for number, row in enumerate(rows):
        if len(row.split()) != width:
            raise InputError(f"{path}: vertex {number} has {len(row.split())} values, expected {width}")
    try:
        values = np.array(" ".join(rows).split(), dtype=np.float64)
    except ValueError as exc:
        raise InputError(f"{path}: non-numeric vertex value ({exc})") from exc
    return values.reshape(count, width)


def read_conf(path: str | Path) -> dict[str, np.ndarray]:
    """Scan-to-world 4x4 poses from a ``bun.conf`` file, keyed by scan name (file stem, e.g. ``"bun000"``).

    ``camera`` lines are ignored. A line that is not ``bmesh <file> tx ty tz qx qy qz qw`` with numeric values and a
    unit quaternion, or a scan listed twice, raises InputError naming the file and line number.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read pose file ({exc})") from exc
    poses: dict[str, np.ndarray] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        words = line.split()
        if not words or words[0] == "camera":
            continue
        name, pose = _parse_bmesh_line(path, number, words)
        if name in poses:
            raise InputError(f"{path}:{number}: scan {name!r} is listed twice")
        poses[name] = pose
    return poses


def _parse_bmesh_line(path: Path, number: int, words: list[str]) -> tuple[str, np.ndarray]:
    where = f"{path}:{number}"
    if words[0] != "bmesh" or len(words) != 9:
        raise InputError(f"{where}: expected 'bmesh <file> tx ty tz qx qy qz qw', got {' '.join(words)!r}")
    try:
        values = np.array(words[2:], dtype=np.float64)
    except ValueError as exc:
        raise InputError(f"{where}: non-numeric pose value ({exc})") from exc
    if not np.all(np.isfinite(values)):
        raise InputError(f"{where}: pose contains NaN or Inf")
    quat = values[3:]
    if abs(np.linalg.norm(quat) - 1.0) > 1e-3:
        raise InputError(f"{where}: quaternion norm is {np.linalg.norm(quat):.6g}, expected 1")
    pose = np.eye(4)
    pose[:3, :3] = Rotation.from_quat(quat).as_matrix().T
    pose[:3, 3] = values[:3]
    return Path(words[1]).stem, pose


def pair_transform(poses: Mapping[str, np.ndarray], target_name: str, source_name: str) -> np.ndarray:
    """4x4 ground truth mapping points of scan ``source_name`` into the frame of scan ``target_name``.

    With scan-to-world poses T_i (target) and T_j (source) this is inv(T_i) @ T_j, i.e.
    R_ij = R_i.T @ R_j, t_ij = R_i.T @ (t_j - t_i).
    """
    for name in (target_name, source_name):
        if name not in poses:
            raise InputError(f"scan {name!r} has no pose (known scans: {', '.join(sorted(poses))})")
    target, source = poses[target_name], poses[source_name]
    rot_t = target[:3, :3].T
    pair = np.eye(4)
    pair[:3, :3] = rot_t @ source[:3, :3]
    pair[:3, 3] = rot_t @ (source[:3, 3] - target[:3, 3])
    return pair


def load_scans(directory: str | Path, names: Iterable[str]) -> dict[str, np.ndarray]:
    """Read ``<directory>/<name>.ply`` for each scan name; returns name -> (N, 3) float64 points in metres."""
    directory = Path(directory)
    scans = {}
    for name in names:
        path = directory / f"{name}.ply"
        if not path.is_file():
            raise InputError(f"{path}: scan file not found")
        scans[name] = read_ply_xyz(path)
    return scans
