"""`python -m sweep`: see sweep/cli.py."""

import os
import sys

if not sys.stdout.isatty():  # cron logs and pipes: wide tables rather than 80-column wraps
    os.environ.setdefault("COLUMNS", "160")

from sweep.cli import main  # noqa: E402  (the consoles read COLUMNS when created)

main()
