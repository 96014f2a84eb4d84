"""neural-tangents 0.6.5 on current JAX (0.10): the patches it needs, applied only where missing.

neural-tangents 0.6.5 (the last release, 2023-12) imports names that JAX has since moved or removed,
and its ``STRUCTURED_DERIVATIVES`` implementation (Novak, Sohl-Dickstein & Schoenholz 2022, "Fast
finite width neural tangent kernel") walks JAX's linearized jaxpr with internals whose signatures
have changed. :func:`neural_tangents` patches exactly those, each only when it is missing, and then
imports the package. It does not change JAX's configuration (``jax_enable_x64``, platforms): the
caller does.

Import-time patches (what the tests' ``tests/_peers.py`` also needs):

* ``jax.core.Jaxpr``, ``JaxprEqn``, ``Literal``, ``Primitive``, ``Var``: moved to
  ``jax.extend.core``; set back on ``jax.core`` from there.
* ``jax.util`` (``safe_map``, ``safe_zip``): the module is gone; a stand-in with the two
  length-checked helpers NT imports.
* ``jax.interpreters.ad.zeros_like_p``: gone; NT's structured rule table keys a rule on it at import
  time. A fresh placeholder primitive takes its place; no traced program contains it.
* ``neural_tangents.experimental``: only NT's TensorFlow route; an empty module stands in when
  ``tensorflow`` or ``tf2jax`` is absent.

Structured-derivatives patches (``implementation=3``):

* ``jax.interpreters.ad.linearize(fn_flat, *primals, has_aux=False)`` returned
  ``(primals_out, pvals, jaxpr, consts)``; JAX's ``jax._src.interpreters.ad.linearize(f, primals_ft)``
  now takes a ``FlatTree`` and returns ``(out_ft, out_zeros, jaxpr, consts)``. NT only asks
  ``pval.is_known()`` of the partial values, i.e. whether that output's tangent is a symbolic zero,
  so an adapter returns objects answering ``out_zeros[i]``. The jaxpr's inputs are the tangents of
  all primals and its outputs the nonzero ones, as before.
* ``ad.source_info_util``, ``ad.reducing_transposes``, ``ad.backward_pass``, ``ad.add_jaxvals_p``:
  no longer re-exported; taken from ``jax._src.interpreters.ad``.
* ``ad.config.jax_enable_checks``: NT reads this flag; ``ad.config`` becomes a namespace with it
  ``False`` (NT's checked branch calls ``core.lattice_join``, which is gone).
* ``jax.core.DShapedArray`` (dynamic shapes, removed): a class no value is an instance of.
* ``Primitive.map_primitive`` (removed with ``xmap``/``pmap`` primitives): ``False``.

With these, ``STRUCTURED_DERIVATIVES`` agrees with ``JACOBIAN_CONTRACTION`` to float32 rounding on
an MLP (``tests/test_bench_peers.py`` checks it in float64 against ``vmap(jacrev)``).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from collections.abc import Callable, Sequence
from typing import Any

_MOVED_TO_EXTEND_CORE = ("Jaxpr", "JaxprEqn", "Literal", "Primitive", "Var")
_AD_REEXPORTS = ("source_info_util", "reducing_transposes", "backward_pass", "add_jaxvals_p")


def neural_tangents() -> types.ModuleType:
    """Return the ``neural_tangents`` module, importing it on current JAX (see the module doc)."""
    if "neural_tangents" in sys.modules:
        return sys.modules["neural_tangents"]
    import jax

    _patch_jax_core(jax)
    _patch_jax_util()
    _patch_ad()
    _stub_tensorflow_route()
    return importlib.import_module("neural_tangents")


def _patch_jax_core(jax: Any) -> None:
    import jax.core
    import jax.extend.core

    for name in _MOVED_TO_EXTEND_CORE:
        if not hasattr(jax.core, name):
            setattr(jax.core, name, getattr(jax.extend.core, name))
    if not hasattr(jax.core, "DShapedArray"):
        jax.core.DShapedArray = type("DShapedArray", (), {})  # pyright: ignore[reportAttributeAccessIssue]
    from jax._src import core as _core

    if not hasattr(_core.Primitive, "map_primitive"):
        _core.Primitive.map_primitive = False  # pyright: ignore[reportAttributeAccessIssue]


def _patch_jax_util() -> None:
    if importlib.util.find_spec("jax.util") is not None:
        return

    def safe_map(f: Callable[..., Any], *args: Sequence[Any]) -> list[Any]:
        return [f(*xs) for xs in safe_zip(*args)]

    def safe_zip(*args: Sequence[Any]) -> list[tuple[Any, ...]]:
        return list(zip(*args, strict=True))

    util = types.ModuleType("jax.util", "Stand-in for jax.util (removed from JAX)")
    util.safe_map = safe_map  # type: ignore[attr-defined]
    util.safe_zip = safe_zip  # type: ignore[attr-defined]
    sys.modules["jax.util"] = util


class _PartialVal:
    """What NT asks of a partial value: ``is_known()``, true for a symbolically zero tangent."""

    def __init__(self, known: bool) -> None:
        self._known = known

    def is_known(self) -> bool:
        return self._known


def _patch_ad() -> None:
    import jax.extend.core
    import jax.interpreters.ad as ad
    from jax._src.interpreters import ad as _ad

    if not hasattr(ad, "zeros_like_p"):
        ad.zeros_like_p = jax.extend.core.Primitive("zeros_like_placeholder")  # pyright: ignore[reportAttributeAccessIssue]
    for name in _AD_REEXPORTS:
        if not hasattr(ad, name) and hasattr(_ad, name):
            setattr(ad, name, getattr(_ad, name))
    if not hasattr(ad, "config"):
        ad.config = types.SimpleNamespace(jax_enable_checks=False)  # pyright: ignore[reportAttributeAccessIssue]
    import inspect

    if "primals_ft" in inspect.signature(_ad.linearize).parameters:
        from jax._src.tree_util import FlatTree

        def linearize(fn_flat: Any, *primals: Any, has_aux: bool = False) -> tuple[Any, ...]:
            if has_aux:
                raise NotImplementedError("the compatibility linearize has no has_aux")
            flat = FlatTree.flatten(tuple(primals))
            out, zeros, jaxpr, consts = _ad.linearize(
                lambda *xs: list(fn_flat.call_wrapped(*xs)), flat
            )
            return list(out.unflatten()), [_PartialVal(z) for z in zeros], jaxpr, consts

        ad.linearize = linearize  # pyright: ignore[reportAttributeAccessIssue]


def _stub_tensorflow_route() -> None:
    if all(importlib.util.find_spec(name) for name in ("tensorflow", "tf2jax")):
        return
    sys.modules["neural_tangents.experimental"] = types.ModuleType(
        "neural_tangents.experimental", "NT's TensorFlow route, not installed"
    )
