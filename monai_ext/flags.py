"""On/off switches given on the command line.

``python -m monai.bundle run ... --use_em false`` passes the *text* ``'false'`` (``fire`` reads only ``False`` as a
bool), and any non-empty text is true in Python: the switch would stay on without a word. Everything in ``monai_ext``
that takes a switch from a config runs it through :func:`ensure_flag`, which refuses text.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["checked_flags", "ensure_flag"]


def ensure_flag(value: Any, name: str) -> bool:
    """``value`` as a ``bool``, refusing anything that is not one (``0``/``1`` and numpy bools are accepted).

    Args:
        value: the switch's value as the config gives it.
        name: the config id or argument, for the message.

    Raises:
        TypeError: ``value`` is text (e.g. ``'false'`` from ``--use_em false``) or another non-boolean; the message
            says how to write it on the command line.

    Example::

        >>> ensure_flag(False, "use_em")
        False
        >>> ensure_flag("false", "use_em")
        Traceback (most recent call last):
        ...
        TypeError: 'use_em' must be True or False, got the text 'false'. On the command line write --use_em False
        (capitalised): lower-case 'false' arrives as text, which Python counts as true.
    """
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        message = f"'{name}' must be True or False, got the text {value!r}."
        if value.strip().lower() in ("true", "false"):
            message += (
                f" On the command line write --{name} {value.strip().capitalize()} (capitalised): lower-case"
                f" {value!r} arrives as text, which Python counts as true."
            )
        raise TypeError(message)
    raise TypeError(f"'{name}' must be True or False, got {value!r} ({type(value).__name__}).")


def _is_flag_annotation(annotation: Any) -> bool:
    # Scripts use ``from __future__ import annotations``, so annotations are usually strings.
    if annotation is bool:
        return True
    return isinstance(annotation, str) and annotation.replace(" ", "") in ("bool", "bool|None", "Optional[bool]")


def checked_flags(function: Callable) -> Callable:
    """Wrap a command-line entry point so that its ``bool`` arguments go through :func:`ensure_flag`.

    ``fire`` turns ``--overwrite false`` into the text ``'false'``, which would *allow* overwriting; the wrapped
    function exits instead, with one line naming the argument and its spelling. ``None`` passes for ``bool | None``
    arguments.

    Example::

        fire.Fire(checked_flags(main))
    """
    signature = inspect.signature(function)
    flags = [name for name, p in signature.parameters.items() if _is_flag_annotation(p.annotation)]

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs)
        for name in flags:
            if name in bound.arguments and bound.arguments[name] is not None:
                try:
                    bound.arguments[name] = ensure_flag(bound.arguments[name], name)
                except TypeError as error:  # a command-line mistake: one line, not a traceback
                    raise SystemExit(f"error: {error}") from None
        return function(*bound.args, **bound.kwargs)

    return wrapper
