"""Launch dlc_ros's registration_node (LiDAR odometry), and optionally play a bag into it.

    ros2 launch dlc_ros registration.launch.py [params_file:=FILE] [model_path:=DIR|none] [points_topic:=TOPIC]
        [use_sim_time:=true|false] [bag:=BAG]

The node reads params_file (default: share/dlc_ros/config/registration.yaml, the file `dlc bringup` takes);
model_path and points_topic override it when given. With bag:=..., `dlc bag play` publishes the bag once the node
subscribes (it waits for the subscriber, so the model's loading and warm-up lose no scan), with /clock when
use_sim_time is true.
"""

import os
import sys

from ament_index_python.packages import get_package_share_directory
from launch.action import Action
from launch.actions import DeclareLaunchArgument, ExecuteProcess, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchContext, LaunchDescription

PLAYER_WAIT_S = "120"  # seconds `dlc bag play` waits for the node to subscribe


def node_and_player(context: LaunchContext) -> list[Action]:
    """The node with its parameters (file, then the overrides given), and the bag player when bag is set."""
    def value(name: str) -> str:  # noqa: E306
        return LaunchConfiguration(name).perform(context)

    sim_time = value("use_sim_time") == "true"
    overrides = {"use_sim_time": sim_time, **{k: value(k) for k in ("model_path", "points_topic") if value(k)}}
    actions: list[Action] = [
        Node(package="dlc_ros", executable="registration_node", name="registration_node", output="screen",
             emulate_tty=True, parameters=[value("params_file"), overrides])  # fmt: skip
    ]
    if value("bag"):
        play = [sys.executable, "-m", "dlc_ros.cli", "bag", "play", value("bag"), "--wait-subscribers", PLAYER_WAIT_S]
        actions.append(ExecuteProcess(cmd=play + (["--clock"] if sim_time else []), name="bag_play", output="screen"))
    return actions


def generate_launch_description() -> LaunchDescription:
    """The launch arguments and the node (plus the player) they configure."""
    params = os.path.join(get_package_share_directory("dlc_ros"), "config", "registration.yaml")
    return LaunchDescription([
        DeclareLaunchArgument("params_file", default_value=params, description="ROS parameter file for the node"),
        DeclareLaunchArgument("model_path", default_value="",
                              description="LiDAR model folder, or 'none' for ICP alone (empty: as in params_file)"),
        DeclareLaunchArgument("points_topic", default_value="",
                              description="input PointCloud2 topic (empty: as in params_file)"),
        DeclareLaunchArgument("use_sim_time", default_value="false", choices=["true", "false"],
                              description="run on /clock (the bag player publishes it)"),
        DeclareLaunchArgument("bag", default_value="", description="rosbag2 folder to play into the node (empty: no)"),
        OpaqueFunction(function=node_and_player),
    ])  # fmt: skip
