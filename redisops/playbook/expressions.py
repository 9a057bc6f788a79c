"""The small, safe expression form of `when:`, `assert:` and `{{ … }}` templates.

Dotted paths into variables and earlier steps' JSON results (`backup.summary.failed`,
`summary.results.0.host`), literals, comparisons, and/or/not, and two helpers (`len`,
`max_by`). Parsed here into a tree and evaluated by walking it: never Python eval.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

_TOKEN = re.compile(
    r"\s*(?:(?P<number>-?\d+(?:\.\d+)?)|(?P<string>'[^']*'|\"[^\"]*\")"
    r"|(?P<op>==|!=|<=|>=|<|>|\(|\)|,|\.)|(?P<name>[A-Za-z_][A-Za-z0-9_-]*))"
)
_KEYWORDS = {"true": True, "false": False, "null": None}
_TEMPLATE = re.compile(r"\{\{(.*?)\}\}")


class ExpressionError(ValueError):
    """An expression that does not parse, or cannot be evaluated against the results."""


@dataclass(frozen=True)
class Literal:
    value: Any


@dataclass(frozen=True)
class Name:
    name: str


@dataclass(frozen=True)
class Attr:
    target: Any
    key: str


@dataclass(frozen=True)
class Call:
    function: str
    args: tuple[Any, ...]


@dataclass(frozen=True)
class Not:
    operand: Any


@dataclass(frozen=True)
class BoolOp:
    op: str
    left: Any
    right: Any


@dataclass(frozen=True)
class Compare:
    op: str
    left: Any
    right: Any


@dataclass(frozen=True)
class Expression:
    """A parsed expression and the text it came from."""

    text: str
    tree: Any

    def names(self) -> set[str]:
        """The variables and step ids it reads (to reject undefined ones before running)."""
        return _names(self.tree)

    def evaluate(self, scope: Mapping[str, Any]) -> Any:
        return _evaluate(self.tree, scope)


def parse_expression(text: str) -> Expression:
    """Parse `text`; ExpressionError says what is wrong and where."""
    parser = _Parser(text)
    tree = parser.expression()
    if parser.peek() is not None:
        raise ExpressionError(f"unexpected {parser.peek()[1]!r} in {text!r}")
    return Expression(text, tree)


def template_parts(text: str) -> list[Expression]:
    """The expressions inside `{{ … }}` in a string."""
    return [parse_expression(match.group(1).strip()) for match in _TEMPLATE.finditer(text)]


def render_template(text: str, scope: Mapping[str, Any], missing: Callable[[str], str]) -> str:
    """`text` with each `{{ expr }}` replaced; `missing(expr)` stands in for what is not known
    yet (a dry run shows later steps' references that way)."""

    def one(match: re.Match[str]) -> str:
        expression = parse_expression(match.group(1).strip())
        if not expression.names() <= set(scope):
            return missing(expression.text)
        value = expression.evaluate(scope)
        return "" if value is None else _text(value)

    return _TEMPLATE.sub(one, text)


def truthy(value: Any) -> bool:
    return value not in (None, False, 0, "", [], {})


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens: list[tuple[str, str]] = []
        position = 0
        while position < len(text):
            match = _TOKEN.match(text, position)
            if match is None or match.end() == position:
                if text[position:].strip():
                    raise ExpressionError(f"cannot read {text[position:].strip()!r} in {text!r}")
                break
            kind = match.lastgroup
            self.tokens.append((kind, match.group(kind)))
            position = match.end()
        if not self.tokens:
            raise ExpressionError("empty expression")
        self.index = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise ExpressionError(f"{self.text!r} ends too soon")
        self.index += 1
        return token

    def accept(self, value: str) -> bool:
        token = self.peek()
        if token is not None and token[1] == value and token[0] in ("op", "name"):
            self.index += 1
            return True
        return False

    def expression(self) -> Any:
        left = self.conjunction()
        while self.accept("or"):
            left = BoolOp("or", left, self.conjunction())
        return left

    def conjunction(self) -> Any:
        left = self.negation()
        while self.accept("and"):
            left = BoolOp("and", left, self.negation())
        return left

    def negation(self) -> Any:
        if self.accept("not"):
            return Not(self.negation())
        return self.comparison()

    def comparison(self) -> Any:
        left = self.postfix()
        token = self.peek()
        if token is not None and token[1] in ("==", "!=", "<", "<=", ">", ">="):
            self.index += 1
            return Compare(token[1], left, self.postfix())
        return left

    def postfix(self) -> Any:
        node = self.primary()
        while self.accept("."):
            kind, value = self.take()
            # `a.0.1` reads as the number 0.1 after the first dot: two indexes, really.
            keys = value.split(".") if kind == "number" else [value]
            if kind not in ("name", "number"):
                raise ExpressionError(f"expected a field name after '.' in {self.text!r}")
            for key in keys:
                node = Attr(node, key)
        return node

    def primary(self) -> Any:
        kind, value = self.take()
        if kind == "number":
            return Literal(float(value) if "." in value else int(value))
        if kind == "string":
            return Literal(value[1:-1])
        if kind == "op" and value == "(":
            node = self.expression()
            if not self.accept(")"):
                raise ExpressionError(f"missing ')' in {self.text!r}")
            return node
        if kind == "name" and value in _KEYWORDS:
            return Literal(_KEYWORDS[value])
        if kind == "name" and value not in ("and", "or", "not"):
            if self.accept("("):
                return self.call(value)
            return Name(value)
        raise ExpressionError(f"unexpected {value!r} in {self.text!r}")

    def call(self, function: str) -> Call:
        if function not in _FUNCTIONS:
            raise ExpressionError(
                f"unknown function {function}() in {self.text!r} (known: len, max_by)"
            )
        args = [] if self.accept(")") else [self.expression()]
        while args and not self.accept(")"):
            if not self.accept(","):
                raise ExpressionError(f"expected ',' or ')' in {self.text!r}")
            args.append(self.expression())
        return Call(function, tuple(args))


def _names(node: Any) -> set[str]:
    if isinstance(node, Name):
        return {node.name}
    if isinstance(node, Attr):
        return _names(node.target)
    if isinstance(node, Not):
        return _names(node.operand)
    if isinstance(node, (BoolOp, Compare)):
        return _names(node.left) | _names(node.right)
    if isinstance(node, Call):
        return set().union(*(_names(arg) for arg in node.args))
    return set()


def _evaluate(node: Any, scope: Mapping[str, Any]) -> Any:
    if isinstance(node, Literal):
        return node.value
    if isinstance(node, Name):
        if node.name not in scope:
            raise ExpressionError(f"{node.name!r} is not defined")
        return scope[node.name]
    if isinstance(node, Attr):
        return _field(_evaluate(node.target, scope), node.key)
    if isinstance(node, Not):
        return not truthy(_evaluate(node.operand, scope))
    if isinstance(node, BoolOp):
        left = truthy(_evaluate(node.left, scope))
        if node.op == "and":
            return left and truthy(_evaluate(node.right, scope))
        return left or truthy(_evaluate(node.right, scope))
    if isinstance(node, Compare):
        return _compare(node.op, _evaluate(node.left, scope), _evaluate(node.right, scope))
    return _FUNCTIONS[node.function](*(_evaluate(arg, scope) for arg in node.args))


def _field(value: Any, key: str) -> Any:
    if isinstance(value, Mapping):
        if key not in value:
            raise ExpressionError(f"no field {key!r} (has: {', '.join(map(str, value)) or '-'})")
        return value[key]
    if isinstance(value, (list, tuple)) and key.lstrip("-").isdigit():
        index = int(key)
        if not -len(value) <= index < len(value):
            raise ExpressionError(f"index {index} out of range (length {len(value)})")
        return value[index]
    raise ExpressionError(f"cannot take {key!r} of {type(value).__name__} {value!r}")


def _compare(op: str, left: Any, right: Any) -> bool:
    if op == "==":
        return left == right
    if op == "!=":
        return left != right
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (left, right))
    if not numbers and not (isinstance(left, str) and isinstance(right, str)):
        raise ExpressionError(f"cannot compare {left!r} {op} {right!r}")
    return {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}[op]


def _len(value: Any) -> int:
    if not isinstance(value, (list, tuple, Mapping, str)):
        raise ExpressionError(f"len() of {type(value).__name__}")
    return len(value)


def _max_by(items: Any, path: Any) -> Any:
    """The item whose dotted `path` is largest; items lacking it (failed hosts) are passed over."""
    if not isinstance(items, (list, tuple)) or not isinstance(path, str):
        raise ExpressionError("max_by(list, 'dotted.path') expects a list and a path string")
    best, best_value = None, None
    for item in items:
        value = item
        try:
            for key in path.split("."):
                value = _field(value, key)
        except ExpressionError:
            continue
        if isinstance(value, (int, float)) and (best_value is None or value > best_value):
            best, best_value = item, value
    if best is None:
        raise ExpressionError(f"max_by: no item has a number at {path!r}")
    return best


_FUNCTIONS: dict[str, Callable[..., Any]] = {"len": _len, "max_by": _max_by}
