"""The ``sleuth`` command line: a thin layer over the graphs, tools and gateway."""
