"""Option values converted without pydantic.

Typer 0.29 converts every option that is not a bare flag (and `--help` itself) through a
pydantic TypeAdapter, and importing pydantic cost 80-90 ms of every run before any redisops
code ran. The annotations redisops declares (str, int, float, bool, Path, enums, list[str],
list[int], with min/max bounds) convert by hand to the same values, with the same messages (one
difference: an integer option refuses "12.0", which pydantic reads as 12). Typer builds a
parameter's converter on first use (`get_runtime_param`); the hook installed here hands it a
plain one first where the annotation allows. Any other annotation, or a typer without the
internals this was written against, keeps typer's own converter: slower, never wrong.
tests/test_cli_coercion.py compares the two on every parameter of the command tree.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Any

from typer._click.exceptions import BadParameter

try:
    from typer._param_types import coerce_cli_choice, coerce_cli_path
    from typer.core import _TyperParameter
except ImportError:  # another typer: every parameter keeps typer's converter
    _TyperParameter = None

_NUMBER_NAMES = {int: ("a valid integer", "an integer"), float: ("a valid number", "a number")}
# pydantic's words for booleans; typer reads an empty value as false.
_BOOLEANS = {
    **dict.fromkeys(("", "0", "off", "f", "false", "n", "no"), False),
    **dict.fromkeys(("1", "on", "t", "true", "y", "yes"), True),
}


def install_plain_coercion() -> None:
    """Make typer try `plain_converter` before building a pydantic one; safe to call twice."""
    if _TyperParameter is None or not hasattr(_TyperParameter, "get_runtime_param"):
        return
    typers_own = _TyperParameter.get_runtime_param
    if getattr(typers_own, "plain_first", False):
        return

    def get_runtime_param(self: Any) -> Any:
        if self._runtime_param is None:
            self._runtime_param = plain_converter(self.type_descriptor)
        return self._runtime_param or typers_own(self)

    get_runtime_param.plain_first = True
    _TyperParameter.get_runtime_param = get_runtime_param


def plain_converter(descriptor: Any) -> PlainConverter | None:
    """The converter for a plain annotation, or None where typer's own must decide."""
    annotation, info = descriptor.annotation, descriptor.parameter_info
    if info.parser is not None or info.clamp:
        return None
    if getattr(annotation, "__origin__", None) is list:
        plain = annotation.__args__ in ((str,), (int,))
    elif isinstance(annotation, type) and issubclass(annotation, Enum):
        plain = True
    else:
        plain = annotation in (str, int, float, bool) or (
            annotation is Path and info.path_type is None
        )
    return PlainConverter(annotation, info) if plain else None


class PlainConverter:
    """What typer's runtime parameter does for one plain annotation, without pydantic."""

    def __init__(self, annotation: Any, info: Any) -> None:
        self.annotation = annotation
        self.info = info

    def coerce(self, value: Any, param: Any, ctx: Any) -> Any:
        many = param.multiple or param.nargs == -1
        if value is None:
            return () if many else None
        if many and isinstance(value, str):
            raise BadParameter("Value must be an iterable.", ctx=ctx, param=param)
        annotation, info = self.annotation, self.info
        if many:
            if getattr(annotation, "__args__", None) == (int,):
                return [_number(int, item, info, param, ctx) for item in value]
            return [str(item) for item in value]
        if annotation is str:
            return str(value)
        if annotation is bool:
            return _boolean(value, param, ctx)
        if annotation is Path:
            path = value if isinstance(value, Path) else Path(value)
            return coerce_cli_path(path, info, path_type=Path, param=param, ctx=ctx)
        if annotation in _NUMBER_NAMES:
            return _number(annotation, value, info, param, ctx)
        try:
            return coerce_cli_choice(
                value, choices=tuple(annotation), case_sensitive=info.case_sensitive, ctx=ctx
            )
        except ValueError as exc:
            raise BadParameter(str(exc), ctx=ctx, param=param) from None


def _boolean(value: Any, param: Any, ctx: Any) -> bool:
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word not in _BOOLEANS:
        raise BadParameter(
            "Input should be a valid boolean, unable to interpret input", ctx=ctx, param=param
        )
    return _BOOLEANS[word]


def _number(kind: type, value: Any, info: Any, param: Any, ctx: Any) -> int | float:
    valid, parsed = _NUMBER_NAMES[kind]
    try:
        if isinstance(value, bool) or (kind is int and isinstance(value, float)):
            raise ValueError
        number = kind(value)
    except (TypeError, ValueError):
        raise BadParameter(
            f"Input should be {valid}, unable to parse string as {parsed}", ctx=ctx, param=param
        ) from None
    if info.min is not None and number < info.min:
        raise BadParameter(
            f"Input should be greater than or equal to {info.min}", ctx=ctx, param=param
        )
    if info.max is not None and number > info.max:
        raise BadParameter(
            f"Input should be less than or equal to {info.max}", ctx=ctx, param=param
        )
    return number
