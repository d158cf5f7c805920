"""The LiDAR simulator: procedural urban scenes around a trajectory (scene), an HDL-64E-like beam model and its
raycasting (lidar), and `dlc sim`, which drives along a KITTI trajectory and writes a KITTI-layout sequence with
exact ground-truth poses (writer). Unlimited registration training data with perfect labels."""
