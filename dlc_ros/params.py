"""ROS parameters declared with descriptors (type, range, read-only) and checked on every set, shared by the nodes,
and what the nodes derive from parameters alike (the input QoS, the shipped model's folder).

A node lists its parameters as ``Param`` values; ``declare`` declares them all and installs one callback that
refuses, with a reason, values a descriptor cannot express (choices, empty names, a node's own extra check).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.exceptions import ParameterException
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from dlc_core.errors import InputError

ExtraCheck = Callable[[str, Any], "str | None"]  # (name, value) -> reason to refuse, or None


@dataclass(frozen=True)
class Param:
    """One ROS parameter: default (its type is the parameter's type), meaning, allowed values; read-only unless
    `dynamic` (then it can change at run time with ``ros2 param set``)."""

    name: str
    default: Any
    description: str
    choices: tuple[str, ...] = ()
    bounds: tuple[float, float] | None = None
    dynamic: bool = False
    non_empty: bool = False

    def descriptor(self) -> ParameterDescriptor:
        """The descriptor rclpy enforces (type, range, read-only) and tools such as ``ros2 param describe`` show."""
        d = ParameterDescriptor(name=self.name, description=self.description, read_only=not self.dynamic)
        if self.choices:
            d.additional_constraints = "one of: " + ", ".join(self.choices)
        if self.bounds is not None and isinstance(self.default, int):
            d.integer_range = [IntegerRange(from_value=int(self.bounds[0]), to_value=int(self.bounds[1]), step=1)]
        elif self.bounds is not None:
            d.floating_point_range = [FloatingPointRange(from_value=self.bounds[0], to_value=self.bounds[1], step=0.0)]
        return d

    def refusal(self, value: Any) -> str | None:
        """Why `value` is refused beyond what the descriptor checks (choices, emptiness), or None."""
        if self.choices and value not in self.choices:
            return f"{self.name} must be one of {', '.join(self.choices)}, got {value!r}"
        if self.non_empty and not value:
            return f"{self.name} must not be empty"
        return None

    def help_line(self) -> str:
        """`name (type, default): description [allowed]` for --help and the README table."""
        bounds = f"{self.bounds[0]:g}..{self.bounds[1]:g}" if self.bounds else ""
        allowed, kind = ", ".join(self.choices) or bounds, type(self.default).__name__
        return f"  {self.name} ({kind}, default {self.default!r}{', run-time' if self.dynamic else ''}): " \
               f"{self.description}{f' [{allowed}]' if allowed else ''}"  # fmt: skip


def parameter_help(params: Sequence[Param]) -> str:
    """The parameter list of a node's --help."""
    return "parameters (--ros-args -p name:=value):\n" + "\n".join(p.help_line() for p in params)


def declare(node: Node, params: Sequence[Param], extra: ExtraCheck | None = None) -> dict[str, Any]:
    """Declare every parameter with its descriptor and install the set-time check; returns the start-up values.
    A refused start-up value is an InputError naming the parameter."""
    by_name = {p.name: p for p in params}

    def check(changed: list[Parameter]) -> SetParametersResult:
        for param in changed:
            spec = by_name.get(param.name)
            reason = spec.refusal(param.value) if spec is not None else None
            if reason is None and extra is not None:
                reason = extra(param.name, param.value)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
        return SetParametersResult(successful=True)

    node.add_on_set_parameters_callback(check)
    for param in params:
        try:
            node.declare_parameter(param.name, param.default, param.descriptor())
        except ParameterException as exc:
            raise InputError(f"parameter {param.name}: {str(exc).splitlines()[0]}") from None
    return {p.name: node.get_parameter(p.name).value for p in params}


def shipped_model(name: str) -> Path:
    """A shipped model's folder: share/dlc_ros/models/<name> of the installed package, else the source tree's
    models/<name> (pip install -e ., a source checkout: no ament index)."""
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory("dlc_ros")) / "models" / name
    except (ImportError, KeyError, OSError):
        return Path(__file__).resolve().parents[1] / "models" / name


RELIABILITY = {"best_effort": ReliabilityPolicy.BEST_EFFORT, "reliable": ReliabilityPolicy.RELIABLE}


def input_qos(values: dict[str, Any]) -> QoSProfile:
    """A node's input QoS from its qos_reliability and qos_depth parameters: keep last, volatile."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=values["qos_depth"],
                      reliability=RELIABILITY[values["qos_reliability"]], durability=DurabilityPolicy.VOLATILE)  # fmt: skip
