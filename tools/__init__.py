"""Model tools: plain Python classes that run in-process (and, later, behind Ray Serve)."""
