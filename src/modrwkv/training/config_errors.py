"""The error a bad configuration raises, and how the entry points report it: one line on stderr, exit status 2."""

from __future__ import annotations

from collections.abc import Callable


class ConfigError(ValueError):
    """The configuration's values or choices are not usable; the message says which key and what to change."""



def exit_with(error: ConfigError) -> None:
    """Print ``error`` as one line on stderr and exit with status 2 (a usage error: nothing ran)."""
    import sys

    print(f"error: {error}", file=sys.stderr, flush=True)
    sys.exit(2)


def exit_on_config_error(func: Callable, *args, **kwargs):
    """Call ``func``; a ``ConfigError`` is printed as one line on stderr and the process exits with status 2.

    In a job of a multirun the error is raised on instead: Hydra marks that job failed and still runs the others.
    """
    from .distributed import is_multirun

    try:
        return func(*args, **kwargs)
    except ConfigError as e:
        if is_multirun():
            raise
        exit_with(e)
