"""The colcon workspace builds the package with the executables in lib/dlc_ros and the launch and config files in
share/dlc_ros; the launch file loads with the real launch / launch_ros (skipped where they are not installed:
they are not wheels, DECISIONS D9)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("rclpy", reason="rclpy (ROS 2 wheels) not installed")

REPO = Path(__file__).resolve().parents[2]
COLCON = Path(sys.executable).with_name("colcon")


def test_colcon_build_installs_the_executables_launch_and_config(tmp_path: Path) -> None:
    colcon = str(COLCON) if COLCON.exists() else shutil.which("colcon")
    assert colcon, "colcon is not installed (make test installs colcon-core, colcon-python-setup-py, colcon-ros)"
    command = [colcon, "--log-base", str(tmp_path / "log"), "build", "--base-paths", str(REPO / "ros2_ws" / "src"),
               "--build-base", str(tmp_path / "build"), "--install-base", str(tmp_path / "install")]  # fmt: skip
    build = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stdout + build.stderr
    prefix = tmp_path / "install" / "dlc_ros"
    assert (prefix / "lib" / "dlc_ros" / "dlc").is_file()
    assert (prefix / "share" / "dlc_ros" / "launch" / "registration.launch.py").is_file()
    assert (prefix / "share" / "dlc_ros" / "launch" / "lstm_demo.launch.py").is_file()
    assert (prefix / "share" / "dlc_ros" / "launch" / "homography.launch.py").is_file()
    assert (prefix / "lib" / "dlc_ros" / "homography_node").is_file()
    assert (prefix / "share" / "dlc_ros" / "models" / "lstm_dlc_mnist" / "model_card.json").is_file()
    assert (prefix / "lib" / "dlc_ros" / "lstm_demo_node").is_file() and (prefix / "lib" / "dlc_ros" / "mnist_digit_publisher").is_file()
    assert (prefix / "share" / "dlc_ros" / "config" / "registration.yaml").is_file()
    executable = prefix / "lib" / "dlc_ros" / "registration_node"
    script = f". '{tmp_path / 'install' / 'setup.sh'}' && '{executable}' --help"
    run = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "usage: registration_node" in run.stdout and "qos_reliability (str, default 'reliable')" in run.stdout


def test_launch_file_loads_with_launch_ros(tmp_path: Path) -> None:
    pytest.importorskip("launch_ros", reason="launch_ros is not installed (not a wheel; DECISIONS D9)")
    from launch.actions import DeclareLaunchArgument, ExecuteProcess
    from launch.launch_description_sources import get_launch_description_from_python_launch_file
    from launch_ros.actions import Node

    from launch import LaunchContext, LaunchDescription

    path = REPO / "launch" / "registration.launch.py"
    os.environ.setdefault("AMENT_PREFIX_PATH", str(tmp_path))  # get_package_share_directory needs an index
    (tmp_path / "share" / "ament_index" / "resource_index" / "packages").mkdir(parents=True)
    (tmp_path / "share" / "ament_index" / "resource_index" / "packages" / "dlc_ros").write_text("")
    (tmp_path / "share" / "dlc_ros").mkdir()
    description = get_launch_description_from_python_launch_file(str(path))
    assert isinstance(description, LaunchDescription)
    names = [e.name for e in description.entities if isinstance(e, DeclareLaunchArgument)]
    assert names == ["params_file", "model_path", "points_topic", "use_sim_time", "bag"]
    context = LaunchContext()
    for entity in description.entities[:-1]:
        entity.visit(context)
    bag = str(REPO / "bags" / "sample")
    context.launch_configurations.update({"model_path": "none", "bag": bag, "use_sim_time": "true"})
    actions = description.entities[-1].visit(context)
    node, player = actions
    assert isinstance(node, Node) and isinstance(player, ExecuteProcess)
    assert node.node_executable == "registration_node" and node.node_package == "dlc_ros"
    command = [c.perform(context) for part in player.cmd for c in part]
    assert command[1:] == ["-m", "dlc_ros.cli", "bag", "play", bag, "--wait-subscribers", "120", "--clock"]


@pytest.mark.parametrize(
    "launch_file, arguments, executables",
    [
        ("lstm_demo.launch.py", ["data", "model_path", "rate_hz", "image_topic"], ["lstm_demo_node", "mnist_digit_publisher"]),
        ("homography.launch.py", ["map_path", "map_topic", "model_path", "image_topic"], ["homography_node"]),
    ],
)
def test_node_launch_files_load_with_launch_ros(launch_file: str, arguments: list[str], executables: list[str]) -> None:
    pytest.importorskip("launch_ros", reason="launch_ros is not installed (not a wheel; DECISIONS D9)")
    from launch.actions import DeclareLaunchArgument
    from launch.launch_description_sources import get_launch_description_from_python_launch_file
    from launch_ros.actions import Node

    description = get_launch_description_from_python_launch_file(str(REPO / "launch" / launch_file))
    assert [e.name for e in description.entities if isinstance(e, DeclareLaunchArgument)] == arguments
    assert [e.node_executable for e in description.entities if isinstance(e, Node)] == executables
