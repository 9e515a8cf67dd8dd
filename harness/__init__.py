"""The frozen harness: data, walk-forward, friction, simulation, metrics, score, statistics.

It imports nothing from strategies, sweep or executor. Editing any file here requires
regenerating the manifest (`make manifest`) and bumps the harness hash on every results row.
"""

HARNESS_VERSION = "2.0.0"
