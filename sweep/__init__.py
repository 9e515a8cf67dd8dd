"""Search drivers, results tables, promotion and the command line (`python -m sweep`)."""
