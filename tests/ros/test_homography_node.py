"""homography_node in its own process, with SIFT + RANSAC and with the shipped model (its default): a published
camera image (a template cut from a held-out photo with a known homography) is answered with the offline aligner's
H, close to the truth, in mono8, padded rgb8 and mono16; bad images and a map that fails to load are warned about
while the node keeps answering; diagnostics report each result (LK iterations with the model)."""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("rclpy", reason="rclpy (ROS 2 wheels) not installed")
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from PIL import Image as PILImage  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import Float64MultiArray  # noqa: E402

from dlc_core.homography.estimator import Aligner  # noqa: E402
from dlc_core.homography.geometry import corner_error  # noqa: E402
from dlc_core.homography.model import load_homography_model  # noqa: E402
from dlc_core.homography.pairs import make_pair, read_grey  # noqa: E402
from dlc_ros.homography_node import default_model_path  # noqa: E402
from dlc_ros.image import array_to_image  # noqa: E402

from .graph import RELIABLE, Graph, process  # noqa: E402

STEP_S = 60.0


@pytest.fixture(scope="module")
def pair(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A pair from a held-out photo; the map (the 192x192 input) saved as a PNG, the camera image the template."""
    p = make_pair(read_grey(shared_data / "homography" / "photos" / "chelsea.jpg"), np.random.default_rng(0))
    folder = tmp_path_factory.mktemp("map")
    u8 = lambda a: (a * 255).round().clip(0, 255).astype(np.uint8)  # noqa: E731
    PILImage.fromarray(u8(p["input"])).save(folder / "map.png")
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    camera = u8(p["template"])
    expected = Aligner(None).align(camera / 255.0, np.asarray(PILImage.open(folder / "map.png"), np.float32) / 255.0).h
    return {"camera": camera, "corners": p["corners"], "map": folder / "map.png", "broken": folder / "broken.jpg",
            "expected": expected}  # fmt: skip


def send(graph: Graph, publisher, msg: Image, out: list, proc) -> np.ndarray:
    count = len(out)
    publisher.publish(msg)
    graph.wait_for(lambda: len(out) > count, STEP_S, "a homography", proc)
    return np.array(out[-1].data).reshape(3, 3)


def test_node_aligns_converts_encodings_and_survives_bad_input(graph: Graph, pair: dict, tmp_path: Path) -> None:
    homographies = graph.listen(Float64MultiArray, "/homography")
    diagnostics = graph.listen(DiagnosticArray, "/diagnostics")
    publisher = graph.node.create_publisher(Image, "/camera/image", RELIABLE)
    args = ["-m", "dlc_ros.homography_node", "--ros-args", "-p", "model_path:=sift", "-p", f"map_path:={pair['broken']}",
            "-p", "qos_depth:=10"]  # keep every image of the burst below
    with process(args, tmp_path / "node.log") as proc:
        graph.wait_until_connected(publisher, "/homography", proc)
        publisher.publish(array_to_image(pair["camera"]))  # no map yet: warned, no answer
        graph.wait_for(lambda: any("no map" in s.message for d in diagnostics for s in d.status), STEP_S, "no-map diagnostics", proc)
        assert graph.set_parameter("/homography_node", "map_path", str(pair["map"])).successful
        h = send(graph, publisher, array_to_image(pair["camera"]), homographies, proc)
        np.testing.assert_allclose(h, pair["expected"], rtol=1e-9, atol=1e-9)
        truth = torch.as_tensor(pair["corners"], dtype=torch.float64)[None]
        assert corner_error(torch.as_tensor(h)[None], truth).item() < 1.0

        rgb = array_to_image(np.repeat(pair["camera"][:, :, None], 3, axis=2), "rgb8")
        rgb.step, rgb.data = 128 * 3 + 16, b"".join(bytes(r) + bytes(16) for r in np.repeat(pair["camera"][:, :, None], 3, axis=2))
        np.testing.assert_allclose(send(graph, publisher, rgb, homographies, proc), pair["expected"], atol=1e-6)
        mono16 = array_to_image(pair["camera"].astype(np.uint16) * 257, "mono16")
        np.testing.assert_allclose(send(graph, publisher, mono16, homographies, proc), pair["expected"], atol=1e-6)

        bad = [array_to_image(pair["camera"]), array_to_image(np.zeros((10, 10), np.uint8)),
               array_to_image(np.full((64, 64), 128, np.uint8))]  # fmt: skip
        bad[0].encoding = "yuv422"
        for msg in bad:
            publisher.publish(msg)
        np.testing.assert_allclose(send(graph, publisher, array_to_image(pair["camera"]), homographies, proc), pair["expected"])
        assert len(homographies) == 4
        graph.wait_for(lambda: any(kv.key == "rejected" and kv.value == "3" for d in diagnostics for s in d.status
                                   for kv in s.values), STEP_S, "3 rejections in the diagnostics", proc)  # fmt: skip
        assert proc.stop(signal.SIGINT) == 0
    log = proc.log()
    assert "Traceback" not in log, log
    assert "map not loaded" in log and "broken.jpg: cannot be read as an image" in log, log
    assert "unsupported encoding 'yuv422'" in log and "camera image is 10x10, smaller than 32x32" in log, log
    assert "camera image is blank (no texture to align)" in log, log


def test_node_with_the_shipped_model_answers_as_the_offline_model(graph: Graph, pair: dict, tmp_path: Path) -> None:
    homographies = graph.listen(Float64MultiArray, "/homography")
    diagnostics = graph.listen(DiagnosticArray, "/diagnostics")
    publisher = graph.node.create_publisher(Image, "/camera/image", RELIABLE)
    model, _ = load_homography_model(default_model_path(), torch.device("cpu"))
    map_image = np.asarray(PILImage.open(pair["map"]), np.float32) / 255.0
    offline = Aligner(model).align(pair["camera"] / 255.0, map_image)
    args = ["-m", "dlc_ros.homography_node", "--ros-args", "-p", f"map_path:={pair['map']}"]  # model_path empty: shipped
    with process(args, tmp_path / "node.log") as proc:
        graph.wait_until_connected(publisher, "/homography", proc)
        h = send(graph, publisher, array_to_image(pair["camera"]), homographies, proc)
        np.testing.assert_allclose(h, offline.h, rtol=1e-6, atol=1e-6)
        truth = torch.as_tensor(pair["corners"], dtype=torch.float64)[None]
        assert corner_error(torch.as_tensor(h)[None], truth).item() < 1.0
        graph.wait_for(lambda: any(kv.key == "lk iterations" and kv.value == str(offline.iterations) for d in diagnostics
                                   for s in d.status for kv in s.values), STEP_S, "the LK iterations in the diagnostics", proc)  # fmt: skip
        assert proc.stop(signal.SIGINT) == 0
    assert "Traceback" not in proc.log() and str(default_model_path()) in proc.log(), proc.log()
