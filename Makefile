# The two commands: `make demo` and `make test`. Both create .venv/ when it is absent and install what they need.
#   TORCH_SPEC   torch requirement (default: the 2.13.0 CPU wheel; e.g. TORCH_SPEC='torch==2.13.0' with a CUDA index)
#   OPEN3D_SPEC  open3d requirement (default: open3d-cpu, the same API at a quarter of the size)
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
OPEN3D_SPEC ?= open3d-cpu==0.20.0
ROS_DISTRO_WHEELS ?= kilted
ROS_WHEELS := 'ros-$(ROS_DISTRO_WHEELS)-rclpy[fastrtps]' ros-$(ROS_DISTRO_WHEELS)-rmw-fastrtps-cpp ros-$(ROS_DISTRO_WHEELS)-std-srvs \
	$(foreach m,sensor nav std geometry diagnostic rosgraph,ros-$(ROS_DISTRO_WHEELS)-$(m)-msgs)
DEPS := numpy scipy h5py matplotlib tqdm pillow pyyaml small-gicp opencv-python-headless rosbags mcap pytest \
	colcon-core colcon-python-setup-py colcon-ros
STAMP := $(VENV)/.installed

# Nothing leaves this machine: DDS discovery on loopback with a domain of this run's own, DDP on loopback.
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST
ROS_DOMAIN_ID ?= $(shell echo $$(( RANDOM % 100 + 100 )))
export ROS_DOMAIN_ID
export MASTER_ADDR := 127.0.0.1
export GLOO_SOCKET_IFNAME := lo

.PHONY: help demo test venv clean

help:
	@echo "make demo   evaluate the shipped models on real data and print the metrics table"
	@echo "make test   install into .venv/ if needed, then run the test suite"

venv: $(STAMP)

# One pip call for everything (colcon-core pins setuptools<80; torch alone would pull a newer one).
$(STAMP): setup.py setup.cfg Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check '$(TORCH_SPEC)' '$(OPEN3D_SPEC)' $(DEPS) $(ROS_WHEELS)
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@$(PY) -c 'import open3d' 2>/dev/null || $(MAKE) --no-print-directory libusb
	$(PY) -c 'import torch, open3d, small_gicp, rclpy; print("environment ok: torch", torch.__version__, "open3d", open3d.__version__)'
	@touch $@

# open3d needs Debian's libusb-1.0-0; install it when it is missing (root, or sudo when available).
.PHONY: libusb
libusb:
	@echo "open3d cannot load libusb-1.0.so.0: installing Debian's libusb-1.0-0"
	@if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq libusb-1.0-0; \
	elif command -v sudo >/dev/null; then sudo apt-get update -qq && sudo apt-get install -y -qq libusb-1.0-0; \
	else echo "error: run 'apt-get install libusb-1.0-0' as root, then 'make' again" >&2; exit 1; fi

demo: $(STAMP)
	$(VENV)/bin/dlc demo

test: $(STAMP)
	$(PY) -m pytest -q tests

clean:
	rm -rf $(VENV) build install log ros2_ws/build ros2_ws/install ros2_ws/log
