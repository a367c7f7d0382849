"""`python -m ftbench` (and `torchrun -m ftbench`) runs the CLI."""

from .launch import main

main()
