"""Launch the LSTM digit demo: lstm_demo_node and mnist_digit_publisher, which publishes real MNIST test digits
into it and logs the running accuracy of the classes that come back.

    ros2 launch dlc_ros lstm_demo.launch.py data:=PATH/TO/mnist_5k [model_path:=DIR] [rate_hz:=2.0]
        [image_topic:=digit_image]

data is an MNIST folder holding the t10k pair (e.g. ../shared/data/mnist_5k) or an images IDX file; model_path
defaults to the shipped model (share/dlc_ros/models/lstm_dlc_mnist).
"""

from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription


def generate_launch_description() -> LaunchDescription:
    """The launch arguments, the classifier and the digit publisher, wired to the same image topic."""
    image_topic = LaunchConfiguration("image_topic")
    return LaunchDescription([
        DeclareLaunchArgument("data", description="MNIST folder (t10k pair) or images IDX file to publish from"),
        DeclareLaunchArgument("model_path", default_value="", description="LSTM model folder (empty: the shipped one)"),
        DeclareLaunchArgument("rate_hz", default_value="2.0", description="digits per second"),
        DeclareLaunchArgument("image_topic", default_value="digit_image", description="the digit image topic"),
        Node(package="dlc_ros", executable="lstm_demo_node", name="lstm_demo_node", output="screen", emulate_tty=True,
             parameters=[{"model_path": LaunchConfiguration("model_path"), "image_topic": image_topic}]),
        Node(package="dlc_ros", executable="mnist_digit_publisher", name="mnist_digit_publisher", output="screen",
             emulate_tty=True, parameters=[{"data": LaunchConfiguration("data"), "image_topic": image_topic,
                                            "rate_hz": LaunchConfiguration("rate_hz")}]),
    ])  # fmt: skip
