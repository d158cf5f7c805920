"""The test's side of the ROS graph: its own rclpy Context and node, spun in a thread, and dlc_ros processes under
test with their logs."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import rclpy
from rcl_interfaces.srv import SetParameters
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy

REPO = Path(__file__).resolve().parents[2]
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
START_S = 90.0  # a node imports torch (and open3d) and warms up: slow on a busy 2-core machine
HANDSHAKE_RETRY_S = 2.0  # between repeats of a first message, and the wait for late duplicates after a reply


class Graph:
    """This test's rclpy Context and node, spun in a background thread; received messages per topic."""

    def __init__(self) -> None:
        self.context = Context()
        rclpy.init(context=self.context)
        self.node = Node("dlc_test", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.received: dict[str, list] = defaultdict(list)
        self.subscriptions: dict[str, Any] = {}
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def listen(self, msg_type: Any, topic: str, qos: QoSProfile = RELIABLE) -> list:
        """Collect `topic`'s messages; returns the list they are appended to."""
        self.subscriptions[topic] = self.node.create_subscription(msg_type, topic, self.received[topic].append, qos)
        return self.received[topic]

    def wait_until_connected(self, publisher: Any, listened: str, proc: NodeProcess) -> None:
        """Wait until the node's subscription matched `publisher` and this graph's subscription on `listened`
        matched the node's publisher (each side sees the match on its own time; a message sent before is lost)."""
        self.wait_for(lambda: publisher.get_subscription_count(), START_S, "the node's subscription", proc)
        self.wait_for(lambda: self.subscriptions[listened].get_publisher_count(), START_S, f"{listened} matched", proc)

    def handshake(self, publisher: Any, msg: Any, replies: list, proc: NodeProcess, *also: list) -> None:
        """Publish `msg` until a reply arrives, then let any late duplicate land and forget the replies (and the
        lists in `also`). A match is seen by each side on its own time, so a first message — or the node's first
        answer — can be lost even after wait_until_connected; after a reply both directions are known to work."""
        deadline = time.monotonic() + START_S
        while not replies:
            if time.monotonic() > deadline or proc.poll() is not None:
                pytest.fail(f"no reply to a first message within {START_S:.0f} s:\n{proc.log()}")
            publisher.publish(msg)
            retry = time.monotonic() + HANDSHAKE_RETRY_S
            while not replies and time.monotonic() < retry:
                time.sleep(0.05)
        time.sleep(HANDSHAKE_RETRY_S)
        for received in (replies, *also):
            received.clear()

    def wait_for(self, condition: Callable[[], Any], timeout: float, what: str, proc: Any = None) -> Any:
        """Poll until `condition()` is truthy; fail with `what` (and the node's log) after `timeout` s."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = condition()
            if result:
                return result
            if proc is not None and proc.poll() is not None:
                pytest.fail(f"the node exited ({proc.returncode}) while waiting for {what}:\n{proc.log()}")
            time.sleep(0.05)
        pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}" + (f":\n{proc.log()}" if proc else ""))

    def call(self, srv_type: Any, name: str, request: Any, timeout: float = 30.0) -> Any:
        """Call a service and wait for its response."""
        client = self.node.create_client(srv_type, name)
        assert client.wait_for_service(timeout_sec=timeout), f"service {name} not available"
        future = client.call_async(request)
        self.wait_for(future.done, timeout, f"the response of {name}")
        self.node.destroy_client(client)
        return future.result()

    def set_parameter(self, node: str, name: str, value: Any) -> Any:
        """SetParameters on `node`; the one result (successful, reason)."""
        request = SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg()])
        return self.call(SetParameters, f"{node}/set_parameters", request).results[0]

    def close(self) -> None:
        self.executor.shutdown()
        rclpy.shutdown(context=self.context)
        self.thread.join(timeout=10)


class NodeProcess(subprocess.Popen):
    """A dlc_ros process whose output goes to a file (read with log())."""

    def __init__(self, args: list[str], log_path: Path) -> None:
        self.log_path = log_path
        with open(log_path, "w") as out:
            super().__init__([sys.executable, *args], stdout=out, stderr=subprocess.STDOUT, cwd=REPO, text=True)

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self, sig: int = signal.SIGINT, timeout: float = 60.0) -> int:
        """Send `sig` and wait for the exit code."""
        self.send_signal(sig)
        return self.wait(timeout=timeout)


@contextmanager
def process(args: list[str], log_path: Path) -> Iterator[NodeProcess]:
    """Run a dlc_ros process for the body; killed in any case at the end."""
    proc = NodeProcess(args, log_path)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
