"""``lstm_demo_node``: the LSTM digit classifier as a ROS 2 node. sensor_msgs/Image in (mono8 28x28; other sizes
are resized and other supported encodings converted to grey, each with a warning); the class (std_msgs/Int32 on
``digit_class``) and the ten probabilities (std_msgs/Float32MultiArray on ``digit_probabilities``) out, one pair
per image, in arrival order.

``mnist_digit_publisher`` is the demo source: it publishes real MNIST digits at a set rate (``digit_image``) with
their labels (``digit_label``), listens to the classes coming back and logs the running accuracy, so that
``dlc node lstm --demo-source DATA`` (both nodes in one process) or ``launch/lstm_demo.launch.py`` runs end to
end. A malformed image is counted and logged (one warning per distinct problem per second); the node goes on.
"""

from __future__ import annotations

import argparse
import sys
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image
from std_msgs.msg import Float32MultiArray, Int32, MultiArrayDimension

from dlc_core.data.mnist import SIDE, load_mnist
from dlc_core.errors import InputError
from dlc_core.images import resize
from dlc_core.models.lstm import load_lstm_model

from .image import ImageError, array_to_image, image_to_array, to_gray
from .node_log import ProblemLog
from .params import RELIABILITY, Param, declare, input_qos, shipped_model

NODE_NAME = "lstm_demo_node"
PUBLISHER_NAME = "mnist_digit_publisher"
SHIPPED_MODEL = "lstm_dlc_mnist"

PARAMETERS = (
    Param("model_path", "", f"LSTM model folder (model.pt + model_card.json); empty = the shipped model "
          f"(share/dlc_ros/models/{SHIPPED_MODEL})"),  # fmt: skip
    Param("device", "auto", "where the network runs: auto = cuda when available", choices=("auto", "cpu", "cuda")),
    Param("image_topic", "digit_image", "input sensor_msgs/Image topic (remappable)", non_empty=True),
    Param("qos_reliability", "reliable", "input QoS reliability (best_effort for SensorDataQoS cameras)",
          choices=tuple(RELIABILITY)),  # fmt: skip
    Param("qos_depth", 10, "input QoS history depth (keep last)", bounds=(1, 100)),
)
PUBLISHER_PARAMETERS = (
    Param("data", "", "MNIST folder or file to publish from (its test split: the t10k pair)", non_empty=True),
    Param("rate_hz", 2.0, "digits per second", bounds=(0.1, 1000.0)),
    Param("image_topic", "digit_image", "output sensor_msgs/Image topic", non_empty=True),
    Param("label_topic", "digit_label", "output std_msgs/Int32 topic with each digit's true label", non_empty=True),
    Param("class_topic", "digit_class", "the classifier's output, compared with the labels for the running accuracy",
          non_empty=True),  # fmt: skip
    Param("count", 0, "digits to publish before stopping; 0 = all, then again from the first", bounds=(0, 1_000_000)),
)


def default_model_path() -> Path:
    """The shipped model this node loads when model_path is empty."""
    return shipped_model(SHIPPED_MODEL)


class LSTMDemoNode(Node):
    """Classifies every image it receives (module docstring). Raises InputError at construction for a bad
    parameter or an unusable model."""

    def __init__(self, **node_kwargs: Any) -> None:
        super().__init__(NODE_NAME, **node_kwargs)
        from training.common import resolve_device

        values = declare(self, PARAMETERS)
        model_path = Path(values["model_path"]) if values["model_path"] else default_model_path()
        self._model, card = load_lstm_model(model_path, resolve_device(values["device"]))
        self._device = next(self._model.parameters()).device
        self._problems = ProblemLog(self.get_logger())
        self.rejected = 0
        self._class_pub = self.create_publisher(Int32, "digit_class", 10)
        self._probs_pub = self.create_publisher(Float32MultiArray, "digit_probabilities", 10)
        self._sub = self.create_subscription(Image, values["image_topic"], self._on_image, input_qos(values))
        accuracy = card.get("metrics", {}).get("val_accuracy")
        self.get_logger().info(
            f"model {model_path} ({card['config']['mode']} mode, {'DLC' if card['dlc'].get('enabled') else 'no DLC'}"
            f"{f', validation accuracy {100 * accuracy:.1f}%' if accuracy is not None else ''}) on {self._device}; "
            f"listening on {self._sub.topic_name}"
        )  # fmt: skip

    def _on_image(self, msg: Image) -> None:
        try:
            pixels = image_to_array(msg)
        except ImageError as exc:
            self.rejected += 1
            self._problems.warn(f"image rejected ({self.rejected} so far): {exc}")
            return
        if msg.encoding not in ("mono8", "8UC1"):
            self._problems.warn(f"{msg.encoding} image converted to grey; the model expects mono8")
        if pixels.shape[:2] != (SIDE, SIDE):
            self._problems.warn(f"{msg.width}x{msg.height} image resized to {SIDE}x{SIDE}; the model expects MNIST-sized digits")
        digit = resize(to_gray(pixels, msg.encoding), SIDE)
        with torch.no_grad():
            logits = self._model(torch.as_tensor(digit, device=self._device)[None])
        probs = torch.softmax(logits, -1)[0].cpu().numpy().astype(np.float32)
        self._class_pub.publish(Int32(data=int(probs.argmax())))
        out = Float32MultiArray(data=probs.tolist())
        out.layout.dim = [MultiArrayDimension(label="class", size=len(probs), stride=len(probs))]
        self._probs_pub.publish(out)


class DigitPublisher(Node):
    """Publishes real MNIST digits and their labels at rate_hz and logs the running accuracy of the classes that
    come back (they answer in order, so each class belongs to the oldest unanswered digit)."""

    def __init__(self, **node_kwargs: Any) -> None:
        super().__init__(PUBLISHER_NAME, **node_kwargs)
        values = declare(self, PUBLISHER_PARAMETERS)
        self._images, self._labels = load_mnist(values["data"], "test")
        if not len(self._labels):
            raise InputError(f"{values['data']}: no digits to publish")
        self._count, self._sent, self._correct, self._answered = values["count"], 0, 0, 0
        self._pending: deque[int] = deque(maxlen=1000)
        self._image_pub = self.create_publisher(Image, values["image_topic"], 10)
        self._label_pub = self.create_publisher(Int32, values["label_topic"], 10)
        self.create_subscription(Int32, values["class_topic"], self._on_class, 10)
        self._timer = self.create_timer(1.0 / values["rate_hz"], self._publish)
        self.get_logger().info(f"publishing {len(self._labels)} digits from {values['data']} at {values['rate_hz']:g} Hz "
                               f"on {self._image_pub.topic_name}")  # fmt: skip

    def _publish(self) -> None:
        if self._count and self._sent >= self._count:
            self._timer.cancel()
            return
        if self._image_pub.get_subscription_count() == 0:
            return  # nobody listens yet: keep the first digit for the classifier
        i = self._sent % len(self._labels)
        msg = array_to_image(self._images[i])
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = "digit"
        self._image_pub.publish(msg)
        self._label_pub.publish(Int32(data=int(self._labels[i])))
        self._pending.append(int(self._labels[i]))
        self._sent += 1

    def _on_class(self, msg: Int32) -> None:
        if not self._pending:
            return
        label = self._pending.popleft()
        self._answered += 1
        self._correct += int(msg.data == label)
        self.get_logger().info(f"digit {self._answered}: label {label}, classified {msg.data} "
                               f"({'ok' if msg.data == label else 'WRONG'}); running accuracy "
                               f"{self._correct}/{self._answered} = {100 * self._correct / self._answered:.1f}%")  # fmt: skip


def cli_main(args: argparse.Namespace) -> int:
    """``dlc node lstm [--demo-source DATA] [--rate HZ] [--ros-args ...]``: the classifier, and with --demo-source
    the digit publisher in the same process."""
    from .bringup import spin_nodes

    factories: list[Any] = [LSTMDemoNode]
    if args.demo_source:
        overrides = {"data": args.demo_source, "rate_hz": args.rate}
        factories.append(lambda: DigitPublisher(parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()]))
    return spin_nodes(factories, args.ros_args)


def main(argv: list[str] | None = None) -> int:
    """Console script ``lstm_demo_node`` (``ros2 run dlc_ros lstm_demo_node [--ros-args ...]``)."""
    from .bringup import console_main

    return console_main(LSTMDemoNode, NODE_NAME, PARAMETERS, argv, __doc__.split("\n\n")[0])


def publisher_main(argv: list[str] | None = None) -> int:
    """Console script ``mnist_digit_publisher`` (``ros2 run dlc_ros mnist_digit_publisher --ros-args -p data:=DIR``)."""
    from .bringup import console_main

    return console_main(DigitPublisher, PUBLISHER_NAME, PUBLISHER_PARAMETERS, argv,
                        "Publish real MNIST test digits (sensor_msgs/Image, mono8) and their labels at a set rate.")


if __name__ == "__main__":
    sys.exit(main())
