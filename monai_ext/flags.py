"""On/off switches given on the command line.

``python -m monai.bundle run ... --use_em false`` passes the *text* ``'false'`` (``fire`` reads only ``False`` as a
bool), and any non-empty text is true in Python: the switch would stay on without a word. Switches are therefore
checked once, where they enter: the scripts' entry points are wrapped in :func:`checked_flags`, and every bundle config
starts its ``initialize`` with :func:`check_flags` of all the switches it reads. The networks, transforms and handlers
behind them take the values as given.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Collection, Mapping
from typing import Any

import numpy as np

__all__ = ["check_flags", "checked_flags", "ensure_flag"]


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


def check_flags(flags: Mapping[str, Any], also_allowed: Mapping[str, Collection[Any]] | None = None) -> None:
    """Refuse, before a bundle run reads any of them, the switches of its config that are not True or False.

    A bundle config calls it first in its ``initialize``, listing every switch the config and its overlays read
    (``python -m monai.bundle run`` and :class:`monai.bundle.ConfigWorkflow` run ``initialize`` before building
    anything else). MONAI Label's ``BundleInferTask`` does not run ``initialize``; it needs no check, as its switches
    come from the JSON booleans of the config files.

    Args:
        flags: ``{config id: value}`` of the switches.
        also_allowed: values beside True and False that a switch may take, e.g. ``{"freeze_clip": ["partial"]}``.

    Raises:
        TypeError: the message of :func:`ensure_flag` for the first switch that is text or another non-boolean.

    Example (a config)::

        "flag_check": {"_target_": "monai_ext.flags.check_flags", "flags": {"amp": "@amp", "use_em": "@use_em"}},
        "initialize": ["@flag_check", "$monai.utils.set_determinism(seed=@seed)"]
    """
    also_allowed = also_allowed or {}
    for name, value in flags.items():
        if value not in also_allowed.get(name, ()):
            ensure_flag(value, name)


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
