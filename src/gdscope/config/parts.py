"""The parts of a trial config: the model, and the data set (:mod:`gdscope.config.data_part`).

Their frozen base is :class:`gdscope.config.base.FrozenPart`. A custom or registered model reads
none of the built-in kinds' options: its stored config marks them ``null``
(:meth:`ModelConfig.unread_fields`, :mod:`gdscope._stored_form`), its hash reads them at their
defaults, as before.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BeforeValidator, Field, JsonValue, field_validator, model_validator

from gdscope import _checks as check
from gdscope._stored_form import BUILT_IN_ONLY, unread_model_fields
from gdscope.config.base import Count, FrozenPart, PositiveCount, _whole
from gdscope.config.data_part import DataConfig
from gdscope.factories import FactoryRef
from gdscope.models.activations import activation_gain
from gdscope.models.parameterization import hash_revision
from gdscope.registration import MODEL_KINDS, MODEL_REGISTRY, model_kinds, with_code

__all__ = [
    "MAX_DEPTH",
    "OPTIONS_BY_KIND",
    "Count",
    "DataConfig",
    "FrozenPart",
    "ModelConfig",
    "PositiveCount",
]

MAX_DEPTH = 1024
"""The deepest network a config accepts (deeper: refused at load, not after minutes of building)."""


_IMAGE_OPTIONS = ("width", "depth", "activation", "parameterization", "init_scale", "readout")
OPTIONS_BY_KIND: dict[str, tuple[str, ...]] = {
    "mlp": tuple(o for o in BUILT_IN_ONLY if o not in ("train_outer", "readout")),
    "two_layer": ("width", "activation", "init_scale", "train_outer"),
    "cnn": _IMAGE_OPTIONS,
    "resnet": (*_IMAGE_OPTIONS, "residual"),
}
"""The options each built-in kind's builder reads (``gdscope.trials.networks``); the others
must stay at their defaults, so that a value set for nothing is refused rather than ignored."""


class ModelConfig(FrozenPart):
    """Which network to build; input and output sizes are taken from the data."""

    kind: str = "mlp"
    """A built-in network (``mlp``, ``two_layer``, ``cnn``, ``resnet``), ``"custom"``: the user's
    ``factory`` called with ``args``, or a name given with ``gs.register_model`` (called with
    ``args``; :mod:`gdscope.registration`)."""
    width: PositiveCount = 256
    depth: Annotated[int, BeforeValidator(_whole), Field(gt=0, le=MAX_DEPTH)] = 3
    activation: Literal["relu", "tanh", "gelu", "softplus", "identity"] = "relu"
    parameterization: Literal["standard", "ntk", "mup", "meanfield"] = "standard"
    bias: bool = True
    residual: bool | None = None
    """Skip connections: ``None`` takes the model's default (mlp: off, resnet: on)."""
    init_scale: float = Field(default=1.0, gt=0)
    init: Literal["random", "identical"] = "random"
    train_outer: bool = False
    readout: Literal["pool", "flatten"] = "pool"
    """``cnn`` / ``resnet`` only: ``"pool"`` reads the global average of the last feature map,
    ``"flatten"`` has a readout weight at every position (Allen-Zhu, Li & Song 2019)."""
    output_activation: Literal["identity", "tanh", "softplus", "gelu", "relu"] = "identity"
    """``φ`` of a nonlinear output layer ``φ(f(x))`` (Liu, Zhu & Belkin 2020); ``identity``: none."""
    output_scale: float = Field(default=1.0, gt=0)
    """``α`` of the lazy-training scaling ``f_α = α(f − f₀)`` (Chizat, Oyallon & Bach 2019)."""
    center_output: bool = False
    """Subtract a frozen copy ``f₀`` of the network at init (output 0 at init); see ``output_scale``."""
    readout_init: Literal["default", "zero"] = "default"
    """``mlp`` only: ``"zero"`` starts the readout at 0 (microsoft/mup's advice for μP)."""
    trained: Literal["all", "hidden"] = "all"
    """``mlp`` only: ``"hidden"`` trains hidden layers; input, readout fixed (Allen-Zhu et al. 2019)."""
    factory: FactoryRef | None = None
    """``kind = "custom"`` only: ``"module:function"`` returning an ``nn.Module``
    (:mod:`gdscope.factories`); called with ``args`` after ``torch.manual_seed(seed)``."""
    args: dict[str, JsonValue] = Field(default_factory=dict)
    """Keyword arguments of ``factory`` (sweep one as ``"model.args.width"``)."""

    HASH_OMITTED_AT_DEFAULT: ClassVar[tuple[str, ...]] = (
        "readout",
        "output_activation",
        "output_scale",
        "center_output",
        "readout_init",
        "trained",
        "factory",
        "args",
    )

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, kind: str) -> str:
        """Refuse an unknown kind, saying how a network of the user's own is registered."""
        kinds = model_kinds()
        if kind not in kinds:
            raise ValueError(
                f"unknown model kind {kind!r}; accepted: {', '.join(kinds)}; a network of "
                f"your own needs gs.register_model({kind!r}, fn) in a module imported first "
                "(on the command line: gdscope --import MODULE, or GDSCOPE_IMPORT=MODULE)"
                f"{check.did_you_mean(kind, kinds)}"
            )
        return kind

    @model_validator(mode="before")
    @classmethod
    def _unread_marks_dropped(cls, raw: Any) -> Any:
        """Read a stored config back: a ``null`` built-in option of a user's model is its default."""
        if isinstance(raw, Mapping):
            unread = unread_model_fields(raw.get("kind", "mlp"))
            return {k: v for k, v in raw.items() if not (v is None and k in unread)}
        return raw

    def unread_fields(self) -> tuple[str, ...]:
        """Return the built-in kinds' options for a custom or registered model (at defaults)."""
        return unread_model_fields(self.kind)

    def hash_payload(self) -> dict[str, Any]:
        """Return the part's payload; a registered kind adds its function's code digest.

        A built-in network that a parameterization's convention revision changed adds the
        revision (:func:`gdscope.models.parameterization.hash_revision`: ``ntk`` with ReLU),
        so that trials stored under the old convention are not resumed; others hash as before.
        So does a ``two_layer`` off ReLU: its builder ignored ``activation`` before revision 2.
        """
        payload = with_code(super().hash_payload(), MODEL_REGISTRY.get(self.kind))
        if self.kind == "two_layer" and self.activation != "relu":  # was built with ReLU
            payload = {**payload, "two_layer_activation": 2}
        if self.kind in ("mlp", "cnn", "resnet"):
            layered = self.kind != "mlp" or self.depth > 1  # an mlp of depth 1 is its readout
            gain = activation_gain(self.activation) if layered else 1.0
            payload = {**payload, **hash_revision(self.parameterization, gain)}
        return payload

    @field_validator("output_scale")
    @classmethod
    def _finite_scale(cls, scale: float) -> float:
        if not math.isfinite(scale):
            raise ValueError(f"output_scale must be a finite number > 0, got {scale}")
        return scale

    @model_validator(mode="after")
    def _options_fit_kind(self) -> ModelConfig:
        if self.kind == "custom":
            return self._custom_fits()
        if self.kind not in MODEL_KINDS:
            return self._registered_fits()
        if self.factory is not None or self.args:
            raise ValueError(
                f"model.factory and model.args apply to kind 'custom', got kind {self.kind!r}; "
                "set model.kind = 'custom' or remove them"
            )
        self._fits_in_memory()
        self._reads_every_option()
        if self.trained == "hidden" and self.depth < 3:
            raise ValueError(
                f"model.trained = 'hidden' needs depth ≥ 3 (a hidden layer to train), got depth "
                f"{self.depth}; raise model.depth"
            )
        return self

    def _reads_every_option(self) -> None:
        """Refuse an option off its default that this built-in kind's builder does not read."""
        reads = OPTIONS_BY_KIND[self.kind]
        for name in BUILT_IN_ONLY:
            value = getattr(self, name)
            if name not in reads and value != type(self).model_fields[name].default:
                users = [kind for kind, options in OPTIONS_BY_KIND.items() if name in options]
                raise ValueError(
                    f"model.{name} = {value!r} applies to kind {' or '.join(map(repr, users))}, "
                    f"got kind {self.kind!r} (which reads {', '.join(reads)}); remove "
                    f"model.{name}"
                )

    def _fits_in_memory(self) -> None:
        """Refuse a network whose hidden weights alone, at 4 bytes each, exceed this machine's RAM.

        The count is a lower bound that needs no data: ``width² · (depth − 1)`` for an MLP (the
        hidden-to-hidden matrices), ``9 · width² · depth`` for 3×3 convolutions.
        """
        if self.kind == "two_layer":
            return
        per_layer = 9 if self.kind in ("cnn", "resnet") else 1
        weights = per_layer * self.width**2 * max(self.depth - 1, 1)
        memory = _physical_memory()
        if memory is not None and 4 * weights > memory:
            raise ValueError(
                f"model.width = {self.width} with depth {self.depth}: at least {weights:.3g} "
                f"weights, {4 * weights / 2**30:.3g} GiB in float32, more than this machine's "
                f"{memory / 2**30:.3g} GiB of memory; use a smaller width or depth"
            )

    def _custom_fits(self) -> ModelConfig:
        if self.factory is None:
            raise ValueError(
                "model.kind = 'custom' needs model.factory = 'module:function' (a function "
                "returning a torch.nn.Module, e.g. 'mynets:make_net' in mynets.py beside the study)"
            )
        for name in BUILT_IN_ONLY:
            if name in self.model_fields_set:
                raise ValueError(
                    f"model.{name} applies to the built-in kinds, not 'custom'; pass it to your "
                    f"factory as model.args.{name}"
                )
        return self

    def _registered_fits(self) -> ModelConfig:
        """Refuse a factory, and built-in options off their defaults, for a registered kind."""
        if self.factory is not None:
            raise ValueError(
                f"model.factory applies to kind 'custom'; kind {self.kind!r} is registered "
                "(gs.register_model) and builds with its own function: remove model.factory"
            )
        for name in BUILT_IN_ONLY:
            if getattr(self, name) != type(self).model_fields[name].get_default():
                raise ValueError(
                    f"model.{name} applies to the built-in kinds, not the registered kind "
                    f"{self.kind!r}; pass it to its function as model.args.{name}"
                )
        return self


@functools.cache
def _physical_memory() -> int | None:
    """Return the physical memory in bytes, or ``None`` where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None
