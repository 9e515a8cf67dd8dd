"""The files other programs read, one home each: their JSON Schemas, examples and typed loaders.

Both `sweep` (which writes them) and `executor` (which reads them) import from here, so neither
imports the other.
"""
