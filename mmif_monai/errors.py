"""What counts as a user's error, and the one wrapper every command line reports them through.

A user's error (bad input, an output that would be refused, a training run that failed with its log named) is
printed as one line, ``PROG: error: <message>``, with exit status 1; ``--debug`` shows the traceback instead.
Anything else is a bug and keeps its traceback: torch's ``RuntimeError`` (out of memory, a shape mismatch) is not
the user's to read as one line. A :class:`MMIFWarning` (an input that is fused, but that the user should look at)
is printed as one line too, ``PROG: warning: <message>``, while other libraries' warnings stay hidden.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable

__all__ = ["MMIFError", "MMIFWarning", "USER_ERRORS", "report_user_errors"]


class MMIFError(Exception):
    """An error the user can fix that is neither bad input (``ValueError``) nor the OS's (``OSError``), e.g. a
    training subprocess that failed (its log named)."""


class MMIFWarning(UserWarning):
    """An input that is fused, but that the user should look at (a nearly empty image, a header field that was
    ignored); the message names the file."""


#: the library reports bad input as ValueError (MONAI does too) and the file system's refusals as OSError
USER_ERRORS: tuple[type[BaseException], ...] = (MMIFError, ValueError, OSError)


def report_user_errors(
    prog: str, call: Callable[[], object], debug: bool = False, extra: tuple[type[BaseException], ...] = ()
) -> int:
    """Run ``call``; return 0, or 1 after printing a user's error (:data:`USER_ERRORS` and ``extra``) as one line.
    Each :class:`MMIFWarning` raised meanwhile is printed as one line when it is raised.

    Args:
        prog: the command's name, the line's prefix.
        call: the command's work.
        debug: re-raise instead, for the traceback.
        extra: more exception types that are the user's (e.g. the Deploy SDK's).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("always", MMIFWarning)  # each file's warning, also on a second run in one process
        shown_elsewhere = warnings.showwarning  # logging's, when the command captures warnings

        def show(message, category, filename, lineno, file=None, line=None):
            if issubclass(category, MMIFWarning):
                print(f"{prog}: warning: {message}", file=sys.stderr)
            else:
                shown_elsewhere(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        try:
            call()
        except (*USER_ERRORS, *extra) as error:
            if debug:
                raise
            text = str(error).strip()
            print(f"{prog}: error: {text.splitlines()[0] if text else type(error).__name__}", file=sys.stderr)
            return 1
    return 0
