"""Evaluations: metrics, benchmark runners and prompt regression suites."""
