"""``dlc bag play``: publish a rosbag2 into the live ROS graph with rclpy, the stand-in for ``ros2 bag play`` where
ROS is not installed.

Messages are read with rosbags, deserialised into the installed rclpy message classes (the bag's CDR bytes are
what rclpy serialises) and published at their recorded spacing divided by --rate. Topics whose message package
is not installed are skipped with a warning (an error if named in --topics). Publishers are reliable (they match
reliable and best-effort subscribers alike), volatile, depth 10.

Playback starts half a second after a subscriber has matched one of the topics (Fast DDS reports the match to the
writer before the reader has matched the writer, and a volatile reader loses what is sent in between), or after
--wait-subscribers seconds with a warning. --clock publishes rosgraph_msgs/Clock from the bag time, with every
message and at 25 Hz in between, for nodes on simulated time (use_sim_time).

--loop plays the bag again and again (DECISIONS D4). Header stamps and /clock are shifted by the bag's length plus
one mean message period per repeat, so they keep increasing. Between two repeats the player waits until the last
message was acknowledged, lets that one period pass, and then calls ``~/reset`` (std_srvs/Trigger) of every node
subscribed to a played topic that offers it (registration_node does): the reset cannot overtake the last message,
and the odometry starts again at the identity. SIGINT or SIGTERM stops playback after the current message (exit 0).
"""

from __future__ import annotations

import argparse
import heapq
import importlib
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import rclpy
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message
from rosgraph_msgs.msg import Clock
from std_srvs.srv import Trigger

from dlc_core.errors import InputError

from .bag_io import BagReader, open_bag
from .bringup import ros_session
from .ros_convert import stamp_ns, time_msg

CLOCK_PERIOD_S = 0.04
CLOCK_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)  # what rclpy's time source subscribes with
PUBLISHER_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
RESET_SERVICE = "reset"
SERVICE_TIMEOUT_S = 5.0
ACK_TIMEOUT_S = 5.0
DISCOVERY_SETTLE_S = 0.5


def message_class(msgtype: str) -> Any:
    """The rclpy class of 'pkg/msg/Name', or None when that message package is not installed."""
    package, _, name = msgtype.replace("/msg/", "/").partition("/")
    try:
        return getattr(importlib.import_module(f"{package}.msg"), name)
    except (ImportError, AttributeError):
        return None


def select_topics(bag: BagReader, wanted: list[str] | None) -> dict[str, Any]:
    """Topic -> message class of the topics to play; missing packages are skipped (named ones are errors)."""
    topics = bag.topics
    unknown = sorted(set(wanted or ()) - set(topics))
    if unknown:
        raise InputError(f"{bag.path}: no topic {', '.join(unknown)} (the bag has {', '.join(topics) or 'none'})")
    chosen = {}
    for topic in wanted or topics:
        cls = message_class(topics[topic])
        if cls is None and wanted:
            raise InputError(f"{topic}: message type {topics[topic]} is not installed")
        if cls is None:
            print(f"warning: skipping {topic}: message type {topics[topic]} is not installed", file=sys.stderr)
            continue
        chosen[topic] = cls
    if not chosen:
        raise InputError(f"{bag.path}: nothing to play")
    return chosen


@dataclass
class Timeline:
    """Bag time of the first and last message played, their count, and the shift that keeps a repeat's stamps
    increasing."""

    start: int = 0
    end: int = 0
    count: int = 0

    @property
    def repeat_shift(self) -> int:
        """Nanoseconds added per repeat: the bag's length plus one mean message period (0.1 s for one message)."""
        span = self.end - self.start
        return span + (span // (self.count - 1) if self.count > 1 else 100_000_000)


@dataclass(frozen=True)
class ClockRamp:
    """Bag time advancing with the wall clock at `rate` from `bag_from` (at monotonic time `wall_from`), held at
    `bag_to`: what /clock says while the player waits."""

    wall_from: float
    bag_from: int
    bag_to: int
    rate: float

    def at(self, wall: float) -> int:
        """Bag time (ns) at monotonic time `wall`."""
        return min(self.bag_from + int((wall - self.wall_from) * self.rate * 1e9), self.bag_to)


class BagPlayer:
    """Publishers for the chosen topics of an open bag, and the playback steps."""

    def __init__(self, node: Node, bag: BagReader, topics: dict[str, Any], clock: bool) -> None:
        self.node, self.bag, self.topics = node, bag, topics
        self.publishers = {t: node.create_publisher(cls, t, PUBLISHER_QOS) for t, cls in topics.items()}
        self.clock = node.create_publisher(Clock, "/clock", CLOCK_QOS) if clock else None

    def messages(self) -> Iterator[tuple[int, str, bytes]]:
        """(bag time ns, topic, raw CDR) of the chosen topics, merged in bag time order."""
        def stream(topic: str) -> Iterator[tuple[int, str, bytes]]:  # noqa: E306
            return ((t, topic, raw) for t, raw, _ in self.bag.messages(topic))

        return heapq.merge(*map(stream, self.topics), key=lambda m: m[0])

    def wait_for_subscribers(self, timeout_s: float) -> bool:
        """Wait until a subscriber has matched one of the publishers, then DISCOVERY_SETTLE_S more; False after
        `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while not any(p.get_subscription_count() for p in self.publishers.values()):
            if time.monotonic() >= deadline or not rclpy.ok():
                return False
            time.sleep(0.05)
        time.sleep(DISCOVERY_SETTLE_S)
        return True

    def publish_clock(self, bag_time: int) -> None:
        """/clock at `bag_time` ns, when --clock is on."""
        if self.clock is not None:
            self.clock.publish(Clock(clock=time_msg(bag_time)))

    def sleep_until(self, wall: float, ramp: ClockRamp) -> None:
        """Sleep until time.monotonic() reaches `wall`, publishing /clock along `ramp` every CLOCK_PERIOD_S."""
        while (left := wall - time.monotonic()) > 0 and rclpy.ok():
            time.sleep(min(left, CLOCK_PERIOD_S))
            self.publish_clock(ramp.at(time.monotonic()))

    def play_once(self, rate: float, shift: int) -> Timeline:
        """Publish every message once at `rate`, header stamps and clock shifted by `shift` ns."""
        began, played = time.monotonic(), Timeline()
        for t, topic, raw in self.messages():
            if not rclpy.ok():
                break
            played = Timeline(played.start if played.count else t, t, played.count + 1)
            self.sleep_until(began + (t - played.start) / rate * 1e-9,
                             ClockRamp(began, played.start + shift, t + shift, rate))  # fmt: skip
            msg = deserialize_message(raw, self.topics[topic])
            if shift and hasattr(msg, "header"):
                msg.header.stamp = time_msg(stamp_ns(msg.header.stamp) + shift)
            self.publish_clock(t + shift)
            self.publishers[topic].publish(msg)
        return played

    def pause_between_repeats(self, played: Timeline, rate: float, shift: int) -> None:
        """After the last message was acknowledged, let the mean message period (the gap of the stamp shift) pass."""
        self.wait_for_acks()
        gap, began, last = played.repeat_shift - (played.end - played.start), time.monotonic(), played.end + shift
        self.sleep_until(began + gap / rate * 1e-9, ClockRamp(began, last, last + gap, rate))

    def reset_subscribers(self) -> list[str]:
        """Call ``~/reset`` (std_srvs/Trigger) of every node subscribed to a played topic; returns the services."""
        services = dict(self.node.get_service_names_and_types())
        names = sorted({f"{i.node_namespace.rstrip('/')}/{i.node_name}/{RESET_SERVICE}" for topic in self.topics
                        for i in self.node.get_subscriptions_info_by_topic(topic)})  # fmt: skip
        called = []
        for name in names:
            if "std_srvs/srv/Trigger" not in services.get(name, ()):
                continue
            client = self.node.create_client(Trigger, name)
            future = client.call_async(Trigger.Request())
            rclpy.spin_until_future_complete(self.node, future, timeout_sec=SERVICE_TIMEOUT_S)
            self.node.destroy_client(client)
            if future.result() is None:
                print(f"warning: {name} did not answer within {SERVICE_TIMEOUT_S:.0f} s", file=sys.stderr)
                continue
            called.append(name)
        return called

    def wait_for_acks(self) -> None:
        """Give reliable subscribers the time to receive the last messages."""
        for publisher in self.publishers.values():
            publisher.wait_for_all_acked(Duration(seconds=ACK_TIMEOUT_S))


def play(player: BagPlayer, rate: float, loop: bool) -> None:
    """Play once, or until interrupted with --loop (pausing and resetting the subscribers between repeats)."""
    shift, repeat = 0, 0
    while rclpy.ok():
        started = time.monotonic()
        played = player.play_once(rate, shift)
        print(f"played {played.count} messages on {len(player.topics)} topics in {time.monotonic() - started:.1f} s",
              flush=True)  # fmt: skip
        if not loop:
            return
        player.pause_between_repeats(played, rate, shift)
        repeat, shift = repeat + 1, shift + played.repeat_shift
        reset = player.reset_subscribers()
        print(f"repeat {repeat}: reset {', '.join(reset) or 'no subscriber (none offers ~/reset)'}", flush=True)


def play_bag(bag: BagReader, topics: dict[str, Any], args: argparse.Namespace) -> None:
    """Create the player node, wait for subscribers, play, and wait for the last acknowledgements."""
    node = Node("dlc_bag_play")
    try:
        player = BagPlayer(node, bag, topics, args.clock)
        if args.wait_subscribers:
            print(f"waiting up to {args.wait_subscribers:g} s for a subscriber on {', '.join(topics)}", flush=True)
            if not player.wait_for_subscribers(args.wait_subscribers):
                print(f"warning: no subscriber after {args.wait_subscribers:g} s; playing anyway", file=sys.stderr)
        play(player, args.rate, args.loop)
        player.wait_for_acks()
    finally:
        node.destroy_node()


def run(args: argparse.Namespace) -> int:
    """Entry point of ``dlc bag play``."""
    if not args.rate > 0:
        raise InputError(f"--rate must be > 0, got {args.rate}")
    if args.wait_subscribers < 0:
        raise InputError(f"--wait-subscribers must be >= 0, got {args.wait_subscribers}")
    with open_bag(args.bag) as bag:
        topics = select_topics(bag, args.topics)
        with ros_session([]):
            play_bag(bag, topics, args)
    return 0
