"""What every command line here promises: a failure is ONE line on stderr and a non-zero exit,
and no secret is printed or recorded.

`OneLineGroup` is the typer group class of each CLI (`typer.Typer(cls=OneLineGroup)`): usage
errors (`--trials 0`, `--trials abc`, an unknown option), HarnessErrors and OS errors become
`error: <what is wrong and how to fix it>`; typer's boxed usage panels never appear. `redact`
masks the passwords and tokens of URLs and command lines before they are shown or stored.

Not frozen (harness/manifest.py UNFROZEN): how a failure is printed changes no result.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from typing import Any

import typer
from typer.core import TyperGroup

from harness.errors import HarnessError

USAGE_EXIT = 2  # click's code for a usage error; HarnessErrors share it

_URL_USERINFO = re.compile(r"(?P<pre>//[^\s:/@]*):[^\s@]*@")  # scheme://user:pw@, ://:pw@
_BARE_USERINFO = re.compile(r"(?P<pre>(?:^|(?<=[\s='\"]))[^\s:/@'\"]+):[^\s@/'\"]+@")  # user:pw@host
_SECRET_KEYS = re.compile(
    r"(?i)(?P<key>\b(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|"
    r"private[_-]?key|sslpassword)\s*=\s*)(?P<value>'[^']*'|\"[^\"]*\"|[^&\s;,'\"]+)")


def redact(text: str) -> str:
    """`text` with URL and libpq-style secrets masked: `scheme://user:pw@` and `://:pw@` become
    `user:***@`, `password=...` (query string or key=value) becomes `password=***`."""
    for pattern in (_URL_USERINFO, _BARE_USERINFO):
        text = pattern.sub(lambda m: f"{m['pre']}:***@", text)
    return _SECRET_KEYS.sub(lambda m: f"{m['key']}***", text)


def one_line(text: str) -> str:
    """A message on one line: its lines joined with '; ', secrets masked."""
    return redact("; ".join(ln.strip() for ln in str(text).splitlines() if ln.strip()))


def fail(message: str, code: int = USAGE_EXIT) -> None:
    print(f"error: {one_line(message)}", file=sys.stderr, flush=True)
    sys.exit(code)


def _usage(exc: typer.TyperException) -> str:
    msg = exc.format_message()
    ctx = getattr(exc, "ctx", None)
    if ctx is not None:
        msg = f"{ctx.command_path}: {msg} (see `{ctx.command_path} --help`)"
    return msg


class OneLineGroup(TyperGroup):
    """The root group of a CLI: runs it, and turns every refusal into one line on stderr."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True, **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except typer.TyperException as exc:  # click's usage errors
            if type(exc).__name__ == "NoArgsIsHelpError":  # the help is already printed
                sys.exit(exc.exit_code)
            fail(_usage(exc), exc.exit_code)
        except HarnessError as exc:
            fail(str(exc))
        except typer.Abort:
            fail("aborted", 1)
        except OSError as exc:  # a path the command cannot read or write
            where = f" {exc.filename}" if exc.filename else ""
            fail(f"{exc.strerror or exc}:{where}", 1)
        sys.exit(code if isinstance(code, int) else 0)
