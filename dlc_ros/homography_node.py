"""``homography_node``: camera-to-map alignment as a ROS 2 node. A camera image (sensor_msgs/Image: mono8, mono16,
rgb8, bgr8, rows padded to ``step``) in; out, per image: the homography (std_msgs/Float64MultiArray, row-major
3x3) mapping **camera pixels to map pixels** (u right, v down, origin at the top-left pixel centre), an overlay
(the camera image warped onto the map, rgb8) and /diagnostics (latency, LK iterations, whether LK diverged and
the regression estimate was used).

The map comes from ``map_path`` (a file, re-read when the parameter changes) or, when ``map_topic`` is set, from
a latched Image topic. Bad input never stops the node: an unknown encoding, an image smaller than 32x32, a blank
(textureless) image or a map that cannot be loaded each get one clear warning (at most once per second for the
same problem) and a count in the diagnostics.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Float64MultiArray, MultiArrayDimension

from dlc_core.errors import InputError
from dlc_core.homography.estimator import Aligner
from dlc_core.homography.model import load_homography_model
from dlc_core.homography.pairs import read_grey

from .image import ImageError, array_to_image, image_to_array, to_gray
from .node_log import ProblemLog
from .params import RELIABILITY, Param, declare, input_qos, shipped_model
from .ros_convert import diagnostic_array

NODE_NAME = "homography_node"
SHIPPED_MODEL = "homography_intensity"  # the best on held-out photos (README, Homography)
MIN_SIDE = 32
BLANK_STD = 1e-3  # grey-level std (0-1 scale) below which an image has nothing to align
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)

PARAMETERS = (
    Param("model_path", "", f"homography model folder; 'sift' = SIFT + RANSAC (no network); empty = the shipped "
          f"model (share/dlc_ros/models/{SHIPPED_MODEL})"),  # fmt: skip
    Param("image_topic", "camera/image", "input camera sensor_msgs/Image topic (remappable)", non_empty=True),
    Param("map_path", "", "map image file (any format Pillow reads); re-read when changed", dynamic=True),
    Param("map_topic", "", "latched sensor_msgs/Image topic with the map; overrides map_path when a map arrives"),
    Param("qos_reliability", "reliable", "camera QoS reliability (best_effort for SensorDataQoS cameras)",
          choices=tuple(RELIABILITY)),  # fmt: skip
    Param("qos_depth", 2, "camera QoS history depth (keep last)", bounds=(1, 100)),
    Param("num_threads", 0, "CPU threads for torch; 0 = all cores", bounds=(0, 256)),
)


def default_model_path() -> Path:
    """The shipped model this node loads when model_path is empty."""
    return shipped_model(SHIPPED_MODEL)


def usable(grey: np.ndarray, what: str) -> None:
    """Refuse images too small or too blank to align (ValueError with the reason)."""
    if min(grey.shape) < MIN_SIDE:
        raise ValueError(f"{what} is {grey.shape[1]}x{grey.shape[0]}, smaller than {MIN_SIDE}x{MIN_SIDE}")
    if float(grey.std()) < BLANK_STD:
        raise ValueError(f"{what} is blank (no texture to align)")


def grey_of(msg: Image) -> np.ndarray:
    """A grey float image in [0, 1] of an Image message (ImageError when it cannot be decoded)."""
    return to_gray(image_to_array(msg), msg.encoding) / 255.0


def overlay(camera: np.ndarray, map_grey: np.ndarray, h: np.ndarray) -> np.ndarray:
    """rgb8 map with the camera image warped onto it (green) and its outline's area blended."""
    from dlc_core.homography.lk import warp

    inverse = torch.as_tensor(np.linalg.inv(h))[None]
    warped = warp(torch.as_tensor(camera, dtype=torch.float64)[None, None], inverse, map_grey.shape)[0, 0].numpy()
    inside = warp(torch.ones(1, 1, *camera.shape, dtype=torch.float64), inverse, map_grey.shape)[0, 0].numpy() > 0.5
    rgb = np.repeat(map_grey[:, :, None], 3, axis=2)
    rgb[inside, 1] = 0.5 * rgb[inside, 1] + 0.5 * warped[inside]
    return (rgb * 255).clip(0, 255).astype(np.uint8)


class HomographyNode(Node):
    """Aligns every camera image with the map (module docstring)."""

    def __init__(self, **node_kwargs: Any) -> None:
        super().__init__(NODE_NAME, **node_kwargs)
        values = declare(self, PARAMETERS)
        if values["num_threads"]:
            torch.set_num_threads(values["num_threads"])
        self._model_name = values["model_path"] or str(default_model_path())
        model = None if values["model_path"] == "sift" else load_homography_model(self._model_name, torch.device("cpu"))[0]
        self._aligner = Aligner(model)
        self._map: np.ndarray | None = None
        self._problems = ProblemLog(self.get_logger())
        self._counts = {"aligned": 0, "rejected": 0, "no_map": 0, "lk_diverged": 0}
        self._last: dict[str, object] = {}
        self._h_pub = self.create_publisher(Float64MultiArray, "homography", 10)
        self._overlay_pub = self.create_publisher(Image, "~/overlay", 10)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.add_on_set_parameters_callback(self._on_parameters)
        if values["map_path"]:
            self._load_map(values["map_path"])
        if values["map_topic"]:
            self.create_subscription(Image, values["map_topic"], self._on_map, LATCHED)
        self._sub = self.create_subscription(Image, values["image_topic"], self._on_image, input_qos(values))
        self.get_logger().info(f"aligner {'SIFT + RANSAC' if model is None else self._model_name}; listening on "
                               f"{self._sub.topic_name}; map {'loaded' if self._map is not None else 'not loaded yet'}")  # fmt: skip

    def _load_map(self, path: str) -> None:
        """Read the map file; a failure is a warning and leaves the node without a map (it keeps running)."""
        try:
            grey = read_grey(Path(path))
            usable(grey, f"map {path}")
        except (InputError, ValueError) as exc:
            self._map = None
            self._problems.warn(f"map not loaded: {exc}")
            return
        self._map = grey
        self.get_logger().info(f"map {path}: {grey.shape[1]}x{grey.shape[0]}")

    def _on_parameters(self, params: list) -> Any:
        from rcl_interfaces.msg import SetParametersResult

        for p in params:
            if p.name == "map_path" and p.value:
                self._load_map(p.value)
        return SetParametersResult(successful=True)

    def _on_map(self, msg: Image) -> None:
        try:
            grey = grey_of(msg)
            usable(grey, "map image")
        except (ImageError, ValueError) as exc:
            self._problems.warn(f"map image rejected: {exc}")
            return
        self._map = grey
        self.get_logger().info(f"map from topic: {grey.shape[1]}x{grey.shape[0]}")

    def _on_image(self, msg: Image) -> None:
        try:
            camera = grey_of(msg)
            usable(camera, "camera image")
        except (ImageError, ValueError) as exc:
            self._counts["rejected"] += 1
            self._problems.warn(f"camera image rejected ({self._counts['rejected']} so far): {exc}")
            self._publish_diagnostics(msg, "WARN", str(exc))
            return
        if self._map is None:
            self._counts["no_map"] += 1
            self._problems.warn("no map loaded: set map_path or publish the map on map_topic")
            self._publish_diagnostics(msg, "WARN", "no map")
            return
        result = self._aligner.align(camera, self._map)
        self._counts["aligned"] += 1
        self._counts["lk_diverged"] += int(result.diverged)
        out = Float64MultiArray(data=result.h.ravel().tolist())
        out.layout.dim = [MultiArrayDimension(label="row", size=3, stride=9), MultiArrayDimension(label="col", size=3, stride=3)]
        self._h_pub.publish(out)
        if self._overlay_pub.get_subscription_count():
            image = array_to_image(overlay(camera, self._map, result.h), "rgb8")
            image.header = msg.header
            self._overlay_pub.publish(image)
        self._last = {"latency ms": f"{result.ms:.1f}", "lk iterations": result.iterations,
                      "lk diverged (regression used)": result.diverged}  # fmt: skip
        self._publish_diagnostics(msg, "WARN" if result.diverged else "OK", "LK diverged: regression estimate used"
                                  if result.diverged else "aligned")  # fmt: skip

    def _publish_diagnostics(self, msg: Image, level: str, message: str) -> None:
        values = {**self._last, **self._counts}
        self._diag_pub.publish(diagnostic_array(msg.header.stamp, f"dlc_ros: {NODE_NAME}", msg.header.frame_id or "camera",
                                                level, message, values))  # fmt: skip


def cli_main(args: Any) -> int:
    """``dlc node homography [--ros-args ...]``."""
    from .bringup import spin_nodes

    return spin_nodes([HomographyNode], args.ros_args)


def main(argv: list[str] | None = None) -> int:
    """Console script ``homography_node`` (``ros2 run dlc_ros homography_node [--ros-args ...]``)."""
    from .bringup import console_main

    return console_main(HomographyNode, NODE_NAME, PARAMETERS, argv, __doc__.split("\n\n")[0])


if __name__ == "__main__":
    sys.exit(main())
