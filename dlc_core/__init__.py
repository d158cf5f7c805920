"""dlc_core: the ROS-free library of dlc_ros (geometry, the DLC loss, models, data, metrics, checkpoints)."""

__version__ = "0.1.0"
