"""lstm_demo_node in its own process, fed real MNIST test digits over DDS: its classes and probabilities are the
offline model's, malformed images are warned about while the node keeps answering, start-up failures are one
line, and ``dlc node lstm --demo-source`` runs the demo end to end."""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("rclpy", reason="rclpy (ROS 2 wheels) not installed")
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import Float32MultiArray, Int32  # noqa: E402

from dlc_core.data.mnist import load_mnist  # noqa: E402
from dlc_core.models.lstm import load_lstm_model  # noqa: E402
from dlc_ros.image import array_to_image  # noqa: E402
from training.lstm import predict  # noqa: E402

from .graph import REPO, RELIABLE, Graph, NodeProcess, process  # noqa: E402

MODEL = REPO / "models" / "lstm_dlc_mnist"
DIGITS = 40
DEMO_DIGITS = 400  # the demo publishes 20 digits a second: this graph may join a few seconds after the first
STEP_S = 30.0


@pytest.fixture(scope="module")
def digits(shared_data: Path) -> dict:
    """The first test digits, their labels, and the shipped model's offline probabilities for them (for the demo
    source's stream, the classes of the first DEMO_DIGITS)."""
    images, labels = load_mnist(shared_data / "mnist_5k", "test")
    model, _ = load_lstm_model(MODEL, torch.device("cpu"))
    probs, _ = predict(model, images[:DEMO_DIGITS], torch.device("cpu"))
    return {"images": images[:DIGITS], "labels": labels[:DIGITS], "probs": probs[:DIGITS],
            "demo_classes": probs.argmax(1), "data": shared_data / "mnist_5k"}  # fmt: skip


def send(graph: Graph, publisher, msg: Image, classes: list, proc: NodeProcess) -> int:
    """Publish one image and wait for its class."""
    count = len(classes)
    publisher.publish(msg)
    graph.wait_for(lambda: len(classes) > count, STEP_S, "the class of a published digit", proc)
    return classes[-1].data


def test_classifies_real_digits_as_the_offline_model_and_survives_bad_images(graph: Graph, digits: dict, tmp_path: Path) -> None:
    classes, probs = graph.listen(Int32, "/digit_class"), graph.listen(Float32MultiArray, "/digit_probabilities")
    publisher = graph.node.create_publisher(Image, "/digit_image", RELIABLE)
    args = ["-m", "dlc_ros.lstm_demo_node", "--ros-args", "-p", f"model_path:={MODEL}"]
    with process(args, tmp_path / "node.log") as proc:
        graph.wait_until_connected(publisher, "/digit_class", proc)
        graph.wait_for(lambda: graph.subscriptions["/digit_probabilities"].get_publisher_count(), 30, "probabilities", proc)
        graph.handshake(publisher, array_to_image(digits["images"][0]), classes, proc, probs)
        for image in digits["images"]:
            send(graph, publisher, array_to_image(image), classes, proc)
        graph.wait_for(lambda: len(probs) == DIGITS, STEP_S, "all probabilities", proc)
        expected = digits["probs"].argmax(1)
        assert [c.data for c in classes] == expected.tolist()
        np.testing.assert_allclose(np.array([p.data for p in probs]), digits["probs"], atol=1e-5)
        accuracy = (expected == digits["labels"]).mean()
        print(f"node accuracy on {DIGITS} real test digits: {accuracy:.3f}")

        bad = [array_to_image(digits["images"][0]) for _ in range(3)]
        bad[0].encoding = "yuv422"
        bad[1].data = bytes(bad[1].data)[:100]
        bad[2].step = 10
        for msg in bad:
            publisher.publish(msg)
        # Still alive: a real digit is answered, an RGB copy and a 56x56 upscale too (converted, resized, warned).
        assert send(graph, publisher, array_to_image(digits["images"][1]), classes, proc) == expected[1]
        rgb = array_to_image(np.repeat(digits["images"][2][:, :, None], 3, axis=2), "rgb8")
        assert send(graph, publisher, rgb, classes, proc) == expected[2]
        big = array_to_image(np.kron(digits["images"][3], np.ones((2, 2), np.uint8)))
        assert send(graph, publisher, big, classes, proc) == expected[3]
        assert send(graph, publisher, array_to_image(np.zeros((10, 10), np.uint8)), classes, proc) in range(10)
        assert proc.stop(signal.SIGINT) == 0
    log = proc.log()
    assert "Traceback" not in log, log
    assert "unsupported encoding 'yuv422'" in log and "data has 100 bytes, expected 784" in log, log
    assert "step 10 is smaller than a row of 28 mono8 pixels" in log and "image rejected (3 so far)" in log, log
    assert "rgb8 image converted to grey" in log and "56x56 image resized to 28x28" in log, log


def test_demo_source_runs_end_to_end(graph: Graph, digits: dict, tmp_path: Path) -> None:
    classes, labels = graph.listen(Int32, "/digit_class"), graph.listen(Int32, "/digit_label")
    args = ["-m", "dlc_ros.cli", "node", "lstm", "--demo-source", str(digits["data"]), "--rate", "20",
            "--ros-args", "-p", f"model_path:={MODEL}"]  # fmt: skip
    with process(args, tmp_path / "demo.log") as proc:
        graph.wait_for(lambda: len(classes) >= 10 and len(labels) >= 10, 120, "10 classified demo digits", proc)
        assert proc.stop(signal.SIGINT) == 0
    # The publisher starts at the first test digit once the classifier listens; this graph may join a little later.
    got = [c.data for c in classes]
    expected = digits["demo_classes"]
    start = next(i for i in range(DEMO_DIGITS - 10) if expected[i : i + 5].tolist() == got[:5])
    assert got[:10] == expected[start : start + 10].tolist()
    log = proc.log()
    assert "Traceback" not in log and "digit 10: label" in log and "running accuracy" in log, log


@pytest.mark.parametrize(
    "args, message",
    [
        (["-m", "dlc_ros.lstm_demo_node", "--ros-args", "-p", f"model_path:={REPO / 'models' / 'dcp_shapes'}"],
         "is a 'registration' model, expected a 'lstm' model"),
        (["-m", "dlc_ros.lstm_demo_node", "--ros-args", "-p", "device:=gpu"], "device must be one of auto, cpu, cuda"),
        (["-m", "dlc_ros.cli", "node", "lstm", "--demo-source", "no/such/folder"], "no/such/folder: no such file or folder"),
    ],
)
def test_start_up_failures_are_one_line(args: list[str], message: str, tmp_path: Path) -> None:
    with process(args, tmp_path / "fail.log") as proc:
        assert proc.wait(timeout=120) == 2
    log = proc.log()
    assert message in log and "Traceback" not in log, log
