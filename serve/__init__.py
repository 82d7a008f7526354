"""Serving: the Ray Serve application, its config, the HTTP API and chat front ends."""
