"""``dlc bringup PARAMS.yaml``: start every dlc_ros node that a standard ROS 2 parameter file configures, in one
process, and ``spin_nodes``: the one start/spin/stop sequence that every node entry point uses.

The parameter file is the one the launch files pass to the nodes: ``node_name: {ros__parameters: {...}}``, with
the namespace either in the key (``/robot1/registration_node``) or as enclosing mappings (``robot1:
{registration_node: ...}``); wildcard sections (``/**``) apply to every node and start none. rclpy gets the file
with ``--params-file``, so each node reads its own section exactly as under ``ros2 launch``.

Shutdown: SIGINT and SIGTERM shut the rclpy context down (rclpy's own handlers); spinning then ends and every node
is closed (workers joined, trajectories saved) before the process exits 0, without a traceback. Python's own
reaction (a KeyboardInterrupt raised wherever the main thread happens to be, even inside a message conversion,
where it surfaces as another exception) is switched off for the session.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.signals import SignalHandlerOptions
from rclpy.utilities import remove_ros_args

from dlc_core.errors import InputError

# Node name -> "module:class".
NODES = {
    "registration_node": "dlc_ros.registration_node:RegistrationNode",
    "lstm_demo_node": "dlc_ros.lstm_demo_node:LSTMDemoNode",
    "mnist_digit_publisher": "dlc_ros.lstm_demo_node:DigitPublisher",
    "homography_node": "dlc_ros.homography_node:HomographyNode",
}
PARAMS_KEY = "ros__parameters"
SPIN_TIMEOUT_S = 0.1  # the longest a signal waits for the executor


@contextmanager
def ros_session(ros_args: Sequence[str]) -> Iterator[None]:
    """rclpy initialised with `ros_args` for the body. SIGINT and SIGTERM shut rclpy down from a Python handler,
    which ends the body quietly: an error raised once rclpy is shut down is a consequence of the signal, not a fault
    to report. (rclpy's own handlers left a node waiting in rcl_wait after SIGINT about once in five test runs on a
    loaded machine; a Python handler runs between the bounded waits of spin_nodes and bag play.)"""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: rclpy.try_shutdown())
    rclpy.init(args=["dlc", *ros_args], signal_handler_options=SignalHandlerOptions.NO)
    try:
        yield
    except ExternalShutdownException:
        pass
    except Exception:
        if rclpy.ok():
            raise
    finally:
        rclpy.try_shutdown()


def spin_nodes(factories: Sequence[Callable[..., Any]], ros_args: Sequence[str]) -> int:
    """Initialise rclpy with `ros_args`, create the nodes, spin until shutdown, then close and destroy them. An
    InputError raised while a node starts propagates after the clean-up."""
    with ros_session(ros_args):
        nodes: list[Any] = []
        try:
            executor = SingleThreadedExecutor()
            for make in factories:
                nodes.append(make())
                executor.add_node(nodes[-1])
            while rclpy.ok():
                executor.spin_once(timeout_sec=SPIN_TIMEOUT_S)
        finally:
            for node in reversed(nodes):
                if hasattr(node, "close"):  # nodes with a worker or files to finish (registration_node)
                    node.close()
                node.destroy_node()
    return 0


def console_main(node_class: Callable[..., Any], name: str, params: Sequence[Any], argv: Sequence[str] | None,
                 description: str | None = None) -> int:
    """A node's console script (``ros2 run dlc_ros NAME``): --help lists the parameters, bad input is one line and
    exit code 2."""
    from .cli import EXIT_INPUT_ERROR
    from .params import parameter_help

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog=name, description=description or (node_class.__doc__ or "").split("\n\n")[0],
                                     epilog=parameter_help(params), formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.parse_args(remove_ros_args([name, *argv])[1:])
    try:
        return spin_nodes([node_class], argv)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INPUT_ERROR


def _sections(tree: dict, namespace: str, path: Path) -> Iterator[tuple[str, str]]:
    """(namespace, node name) of every ros__parameters section below `tree`."""
    for key, value in tree.items():
        if not isinstance(value, dict):
            raise InputError(f"{path}: {namespace}/{key} must be a mapping with {PARAMS_KEY}")
        full = f"{namespace}/{str(key).strip('/')}"
        if PARAMS_KEY in value:
            ns, _, name = full.rpartition("/")
            yield ns, name
        else:
            yield from _sections(value, full, path)


def configured_nodes(path: Path) -> list[tuple[str, str]]:
    """(namespace, node name) of each dlc_ros node the parameter file configures, in file order."""
    import yaml

    try:
        tree = yaml.safe_load(path.read_text())
    except OSError as err:
        raise InputError(f"{path}: cannot read the parameter file ({err.strerror})") from None
    except yaml.YAMLError as err:
        raise InputError(f"{path}: not valid YAML ({' '.join(str(err).split())})") from None
    if not isinstance(tree, dict) or not tree:
        raise InputError(f"{path}: expected 'node_name: {{{PARAMS_KEY}: {{...}}}}' sections")
    nodes = [(ns, name) for ns, name in _sections(tree, "", path) if "*" not in f"{ns}/{name}"]
    unknown = sorted({name for _, name in nodes if name not in NODES})
    if unknown:
        raise InputError(f"{path}: {', '.join(unknown)} is not a dlc_ros node (known: {', '.join(NODES)})")
    if not nodes:
        raise InputError(f"{path}: configures no dlc_ros node (known: {', '.join(NODES)})")
    return nodes


def node_class(name: str) -> Any:
    """The node class registered under `name` (imported only now)."""
    module, _, attribute = NODES[name].partition(":")
    return getattr(importlib.import_module(module), attribute)


def run(args: argparse.Namespace) -> int:
    """Entry point of ``dlc bringup PARAMS.yaml [--ros-args ...]``."""
    path = Path(args.params)
    nodes = configured_nodes(path)
    factories = [functools.partial(node_class(name), namespace=ns or "/") for ns, name in nodes]
    return spin_nodes(factories, ["--ros-args", "--params-file", str(path.resolve()), "--", *args.ros_args])
