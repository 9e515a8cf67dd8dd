"""`python -m executor`: see executor/cli.py."""

from executor.cli import main

main()
