"""The arithmetic expressions of reducers (``reduce = "expr"``, ``budget = "40*sqrt(kappa)"``).

An expression is checked once at construction (:func:`check_expression`: ``+ - * / **``, numeric
constants, the functions ``sqrt log log10 exp abs min max`` and dotted names) and evaluated per
trial by :func:`evaluate_node`, which asks a ``lookup`` for the value of every name.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable
from typing import Any

FUNCTIONS: dict[str, Callable[..., Any]] = {
    "sqrt": math.sqrt,
    "log": math.log,
    "log10": math.log10,
    "exp": math.exp,
    "abs": abs,
    "min": min,
    "max": max,
}
BINARY: dict[type, Callable[[float, float], float]] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.Pow: lambda a, b: a**b,
}


def dotted(node: ast.AST) -> str | None:
    """Return ``a.b.c`` for a name or attribute chain, else ``None``."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        head = dotted(node.value)
        return None if head is None else f"{head}.{node.attr}"
    return None


def names(node: ast.AST) -> list[str]:
    """Return the config keys and metrics an expression reads (dotted names whole, no functions)."""
    if isinstance(node, ast.Call):
        return [name for arg in node.args for name in names(arg)]
    name = dotted(node)
    if name is not None:
        return [name]
    return [name for child in ast.iter_child_nodes(node) for name in names(child)]


ARITY: dict[str, tuple[int, int | None]] = {"min": (2, None), "max": (2, None)}
"""``(fewest, most)`` arguments of each function (``None``: no limit); the others take one."""
MAX_DEPTH = 100
"""The deepest expression tree accepted (evaluation recurses once per level)."""
MAX_LENGTH = 2000
"""The longest expression accepted (nesting deep enough to exhaust the parser is refused)."""


def check_expression(text: str) -> None:
    """Raise ``ValueError`` naming what is not allowed if ``text`` is not a reducer expression."""
    if len(text) > MAX_LENGTH:
        raise ValueError(f"expr of {len(text)} characters: at most {MAX_LENGTH}; split it")
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, RecursionError, MemoryError) as err:
        why = err.msg if isinstance(err, SyntaxError) else "nested too deeply"
        raise ValueError(f"expr {text[:60]!r} is not an arithmetic expression: {why}") from None
    if _depth(tree) > MAX_DEPTH:
        raise ValueError(f"expr {text[:60]!r}: nested more than {MAX_DEPTH} levels deep")
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            if not (isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS) or node.keywords:
                raise ValueError(f"expr {text!r}: calls allowed: {', '.join(FUNCTIONS)}")
            low, high = ARITY.get(node.func.id, (1, 1))
            if len(node.args) < low or (high is not None and len(node.args) > high):
                wanted = f"at least {low}" if high is None else f"{low}"
                raise ValueError(
                    f"expr {text!r}: {node.func.id}() takes {wanted} argument(s), "
                    f"got {len(node.args)}"
                )
        elif isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, int | float):
                raise ValueError(f"expr {text!r}: only numeric constants, got {node.value!r}")
        elif isinstance(node, ast.BinOp) and type(node.op) not in BINARY:
            raise ValueError(f"expr {text!r}: operators allowed: + - * / **")
        elif isinstance(node, ast.UnaryOp) and not isinstance(node.op, ast.USub | ast.UAdd):
            raise ValueError(f"expr {text!r}: unary operators allowed: + -")
        elif not isinstance(
            node,
            ast.Expression
            | ast.BinOp
            | ast.UnaryOp
            | ast.Call
            | ast.Constant
            | ast.Name
            | ast.Attribute
            | ast.Load
            | ast.operator
            | ast.unaryop,
        ):
            raise ValueError(f"expr {text!r}: {type(node).__name__} is not allowed")


def _depth(tree: ast.AST) -> int:
    """Return the depth of ``tree`` (iteratively: a deep tree must not exhaust the stack here)."""
    deepest, stack = 0, [(tree, 1)]
    while stack:
        node, level = stack.pop()
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in ast.iter_child_nodes(node))
    return deepest


class UnresolvedError(Exception):
    """A name or node of an expression that has no value for this trial."""


def evaluate_node(node: ast.AST, lookup: Callable[[str], float]) -> float:
    """Evaluate a checked expression tree, reading each (dotted) name through ``lookup``."""
    if isinstance(node, ast.Constant):
        return float(node.value)  # type: ignore[arg-type]  # numeric: checked at construction
    if isinstance(node, ast.UnaryOp):
        operand = evaluate_node(node.operand, lookup)
        return -operand if isinstance(node.op, ast.USub) else operand
    if isinstance(node, ast.BinOp):
        op = BINARY[type(node.op)]
        return op(evaluate_node(node.left, lookup), evaluate_node(node.right, lookup))
    if isinstance(node, ast.Call):
        func = FUNCTIONS[node.func.id]  # type: ignore[attr-defined]
        return func(*(evaluate_node(arg, lookup) for arg in node.args))
    name = dotted(node)
    if name is None:
        raise UnresolvedError(f"cannot evaluate {ast.dump(node)}")
    return lookup(name)
