"""numpy poses -> ROS messages (nav_msgs/Odometry and Path, TransformStamped, DiagnosticArray) and stamps.

Poses are 4x4 homogeneous matrices mapping a scan's frame into the odometry frame (REP-103 axes: x forward,
y left, z up, metres). Stamps are integer nanoseconds, as in ``bag_io``, so no precision is lost on the way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point, Pose, PoseStamped, Quaternion, TransformStamped, Twist, Vector3
from nav_msgs.msg import Odometry
from scipy.spatial.transform import Rotation

from .bag_io import matrix_to_quaternion
from .pointcloud2 import split_stamp

LEVELS = {"OK": DiagnosticStatus.OK, "WARN": DiagnosticStatus.WARN, "ERROR": DiagnosticStatus.ERROR}


def time_msg(stamp_ns: int) -> Time:
    """builtin_interfaces/Time of a nanosecond stamp."""
    sec, nanosec = split_stamp(stamp_ns)
    return Time(sec=sec, nanosec=nanosec)


def stamp_ns(stamp: Any) -> int:
    """Nanoseconds of a builtin_interfaces/Time (or anything with sec and nanosec)."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def pose_msg(pose: np.ndarray) -> Pose:
    """geometry_msgs/Pose of a 4x4 matrix (quaternion with w >= 0)."""
    qx, qy, qz, qw = matrix_to_quaternion(pose[:3, :3])
    px, py, pz = (float(v) for v in pose[:3, 3])
    return Pose(position=Point(x=px, y=py, z=pz), orientation=Quaternion(x=qx, y=qy, z=qz, w=qw))


def twist_msg(motion: np.ndarray, dt_s: float) -> Twist:
    """Mean body-frame velocity of a relative 4x4 motion over dt_s seconds (linear m/s, angular rad/s)."""
    linear = motion[:3, 3] / dt_s
    angular = Rotation.from_matrix(motion[:3, :3]).as_rotvec() / dt_s
    return Twist(linear=Vector3(x=float(linear[0]), y=float(linear[1]), z=float(linear[2])),
                 angular=Vector3(x=float(angular[0]), y=float(angular[1]), z=float(angular[2])))  # fmt: skip


def odometry_msg(pose: np.ndarray, stamp: int, frame_id: str, child_frame_id: str,
                 twist: Twist | None = None) -> Odometry:  # fmt: skip
    """nav_msgs/Odometry: `pose` of child_frame_id in frame_id at `stamp` ns; covariances unknown (zero)."""
    msg = Odometry()
    msg.header.stamp, msg.header.frame_id, msg.child_frame_id = time_msg(stamp), frame_id, child_frame_id
    msg.pose.pose = pose_msg(pose)
    if twist is not None:
        msg.twist.twist = twist
    return msg


def pose_stamped_msg(pose: np.ndarray, stamp: int, frame_id: str) -> PoseStamped:
    """geometry_msgs/PoseStamped, one element of a nav_msgs/Path."""
    msg = PoseStamped(pose=pose_msg(pose))
    msg.header.stamp, msg.header.frame_id = time_msg(stamp), frame_id
    return msg


def transform_msg(pose: np.ndarray, stamp: int, parent: str, child: str) -> TransformStamped:
    """geometry_msgs/TransformStamped parent -> child (what tf2 broadcasts) of a 4x4 pose."""
    p = pose_msg(pose)
    msg = TransformStamped()
    msg.header.stamp, msg.header.frame_id, msg.child_frame_id = time_msg(stamp), parent, child
    msg.transform.translation = Vector3(x=p.position.x, y=p.position.y, z=p.position.z)
    msg.transform.rotation = p.orientation
    return msg


def diagnostic_array(stamp: Time, name: str, hardware_id: str, level: str, message: str,
                     values: Mapping[str, object]) -> DiagnosticArray:  # fmt: skip
    """A DiagnosticArray with one DiagnosticStatus; `level` is OK, WARN or ERROR, values become strings."""
    status = DiagnosticStatus(level=LEVELS[level], name=name, message=message, hardware_id=hardware_id,
                              values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])  # fmt: skip
    msg = DiagnosticArray(status=[status])
    msg.header.stamp = stamp
    return msg
