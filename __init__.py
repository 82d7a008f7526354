"""Sleuth: an agent framework for investigating anomalies in surveillance video.

The package is laid out as ``sleuth.agents`` (LLM/VLM nodes), ``sleuth.tools`` (model
services), ``sleuth.graphs`` (LangGraph graphs), ``sleuth.prompts``, ``sleuth.evals`` and
``sleuth.serve``; every model call goes through :mod:`sleuth.llm.gateway`.
"""

__version__ = "0.1.0"
