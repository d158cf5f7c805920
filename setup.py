"""dlc_ros: one ament_python ROS 2 package that is also a plain pip-installable project (DESIGN.md §1)."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "dlc_ros"


def files(pattern: str) -> list[str]:
    return sorted(glob(pattern))


setup(
    name=PACKAGE,
    version="0.1.0",
    description="Deep Loss Convexification (DLC) for ROS 2: star-convex registration models, ICP, training tools",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["dlc_core", "dlc_core.*", "training", "training.*", "dlc_ros", "dlc_ros.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml", "README.md", "LICENSE"]),
        (f"share/{PACKAGE}/launch", files("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", files("config/*.yaml")),
    ]
    + [(f"share/{PACKAGE}/{d}", files(f"{d}/*")) for d in files("models/*")],
    # torch and open3d are not pinned here: the Makefile installs the CPU wheels (TORCH_SPEC, OPEN3D_SPEC), a GPU
    # robot brings its own CUDA torch and open3d. Both are imported lazily with a clear message when missing.
    install_requires=["numpy", "scipy", "h5py", "matplotlib", "tqdm", "pyyaml"],
    extras_require={
        "icp": ["open3d-cpu==0.20.0", "small-gicp"],
        "test": ["pytest"],
        # ROS 2 Kilted from PyPI (x86_64, CPython 3.10-3.13) where no ROS install provides rclpy.
        "ros": [f"ros-kilted-{name}" for name in ("rclpy[fastrtps]", "rmw-fastrtps-cpp", "std-srvs", "sensor-msgs",
                                                  "nav-msgs", "std-msgs", "geometry-msgs", "diagnostic-msgs",
                                                  "rosgraph-msgs")] + ["colcon-core", "colcon-python-setup-py", "colcon-ros"],
    },
    zip_safe=True,
    entry_points={
        "console_scripts": [
            "dlc = dlc_ros.cli:main",
            "registration_node = dlc_ros.registration_node:main",
            "lstm_demo_node = dlc_ros.lstm_demo_node:main",
            "homography_node = dlc_ros.homography_node:main",
            "mnist_digit_publisher = dlc_ros.lstm_demo_node:publisher_main",
        ]
    },
)
