"""The ``cdarts`` command line (typer)."""
