"""The `ftbench` command line: `app` and one module per command (each defines `register(app)`)."""

from .app import app, main

__all__ = ["app", "main"]
