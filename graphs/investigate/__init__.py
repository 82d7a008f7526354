"""The ``investigate`` agent: chat with Sleuth, which calls detect, explain, search, calibrate, rules and
frame tools, pausing for the person's approval before anything that changes state or takes long."""

from sleuth.graphs.investigate.configuration import InvestigateConfig
from sleuth.graphs.investigate.decide import Inventory, ToolMode, use_schema
from sleuth.graphs.investigate.graph import build_graph
from sleuth.graphs.investigate.session import ChatEvent, Investigator, default_context, first_tool_call
from sleuth.graphs.investigate.tools import TOOLS

__all__ = ["TOOLS", "ChatEvent", "InvestigateConfig", "Inventory", "Investigator", "ToolMode", "build_graph",
           "default_context",
           "first_tool_call", "use_schema"]
