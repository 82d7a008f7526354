"""Live input: watching a stream and delivering its alerts."""
