"""Modifiable strategy modules. They import the harness only; see strategies/base.py."""
