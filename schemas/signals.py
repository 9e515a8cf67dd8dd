"""`sweep signals --json`: the document downstream tools read (schemas/signals.schema.json).

Written by sweep (sweep/signals.py builds it); validated here before it is printed, so a
reader can rely on the schema.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

from harness.errors import HarnessError

SCHEMA_PATH = Path(__file__).resolve().parent / "signals.schema.json"


class SignalsDocumentError(HarnessError):
    """A signals document that does not match its schema."""


@cache
def _validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text()))


def validate_document(doc: Any) -> None:
    """Raise SignalsDocumentError naming the first schema violation and where it is."""
    errors = sorted(_validator().iter_errors(doc), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        where = "/".join(str(p) for p in err.absolute_path) or "(top level)"
        raise SignalsDocumentError(f"signals document does not match {SCHEMA_PATH.name} at "
                                   f"{where}: {err.message}")
