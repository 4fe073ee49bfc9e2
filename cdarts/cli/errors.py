"""Turn bad-input errors into one line on stderr and exit code 2 (never a traceback)."""

from __future__ import annotations

import errno
import functools
import sys
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import typer

from cdarts.errors import CdartsError

P = ParamSpec("P")
R = TypeVar("R")

USER_ERROR_EXIT_CODE = 2
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}


def fail(message: str) -> typer.Exit:
    """Print ``message`` as a one-line error; return the Exit to raise."""
    print(f"cdarts: error: {message}", file=sys.stderr)
    return typer.Exit(USER_ERROR_EXIT_CODE)


def handles_user_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Decorator for CLI commands: CdartsError -> one-line message, exit code 2."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except CdartsError as error:
            raise fail(str(error).splitlines()[0] if str(error) else type(error).__name__) from None
        except OSError as error:  # a file-system fault the command did not translate: still one line
            verb = "write" if error.errno in _WRITE_ERRNOS else "access"
            where = f"cannot {verb} {error.filename}: " if error.filename else ""
            raise fail(f"{where}{error.strerror or error}".splitlines()[0]) from None
        except KeyboardInterrupt:
            print("cdarts: interrupted", file=sys.stderr)
            raise typer.Exit(130) from None

    return wrapper
