"""Graphs: LangGraph StateGraphs (detect, calibrate, explain, search, investigate) with typed
state, each usable alone and as a tool of the investigate agent."""
