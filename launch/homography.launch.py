"""Launch dlc_ros's homography_node (camera-to-map alignment).

    ros2 launch dlc_ros homography.launch.py map_path:=MAP.jpg [model_path:=DIR|sift] [image_topic:=TOPIC]
        [map_topic:=TOPIC]

The node publishes `homography` (Float64MultiArray, row-major
3x3, camera pixels -> map pixels), `~/overlay` (rgb8) and /diagnostics. model_path defaults to the shipped model.
"""

from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription

ARGUMENTS = {
    "map_path": ("", "map image file (empty: wait for map_topic)"),
    "map_topic": ("", "latched Image topic with the map (empty: none)"),
    "model_path": ("", "homography model folder, or 'sift' (empty: the shipped model)"),
    "image_topic": ("camera/image", "camera Image topic"),
}


def generate_launch_description() -> LaunchDescription:
    """The launch arguments and the node they configure."""
    return LaunchDescription([
        *[DeclareLaunchArgument(name, default_value=default, description=text) for name, (default, text) in ARGUMENTS.items()],
        Node(package="dlc_ros", executable="homography_node", name="homography_node", output="screen", emulate_tty=True,
             parameters=[{name: LaunchConfiguration(name) for name in ARGUMENTS}]),
    ])  # fmt: skip
