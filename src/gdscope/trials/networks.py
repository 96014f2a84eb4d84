"""The network and data set of a network trial: ``MODELS`` (kind → builder) and the data loaders.

``MODELS`` maps ``model.kind`` to a builder ``(model config, x, outputs, seed, dtype, device) →
nn.Module``: the four built-in networks of :mod:`gdscope.models`, ``"custom"``, the user's
factory (:mod:`gdscope.factories`), and the kinds named with ``gs.register_model``
(:mod:`gdscope.registration`; read-only, read live). Input and output sizes come from the data:
the input shape from ``x``, the number of outputs from the targets (class count for integer
labels, columns for float targets). ``mlp`` and ``two_layer`` read flattened inputs, ``cnn`` and ``resnet`` images
``(n, C, H, W)``; a custom or registered model gets ``x`` as its data set gives it.
"""

from __future__ import annotations

import inspect
import itertools
import warnings
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from gdscope import data as gsdata
from gdscope import models
from gdscope.config import DataConfig, ModelConfig, TrialConfig
from gdscope.data.registry import BUILT_IN_DATASETS
from gdscope.factories import FactoryRef, call_factory, call_user
from gdscope.registration import DATASET_REGISTRY, MODEL_REGISTRY, MergedView, Registered

Pair = tuple[Tensor, Tensor]
ModelBuilder = Callable[[ModelConfig, Tensor, int, dict[str, Any]], nn.Module]
"""``(model config, training inputs x, outputs, {seed, dtype, device}) → nn.Module``."""


def _two_layer(m: ModelConfig, x: Tensor, out_dim: int, common: dict[str, Any]) -> nn.Module:
    if out_dim != 1:
        raise ValueError(
            f"model.kind: 'two_layer' has one output but the data has {out_dim}; "
            "use kind 'mlp' or scalar targets"
        )
    return models.two_layer(
        x.shape[1],
        m.width,
        train_outer=m.train_outer,
        activation=m.activation,
        init_scale=m.init_scale,
        **common,
    )


def _mlp(m: ModelConfig, x: Tensor, out_dim: int, common: dict[str, Any]) -> nn.Module:
    return models.mlp(
        x.shape[1],
        m.width,
        depth=m.depth,
        out_dim=out_dim,
        activation=m.activation,
        bias=m.bias,
        parameterization=m.parameterization,
        residual=bool(m.residual),
        init_scale=m.init_scale,
        init=m.init,
        readout_init=m.readout_init,
        trained=m.trained,
        **common,
    )


def _image(m: ModelConfig, x: Tensor, out_dim: int) -> dict[str, Any]:
    if x.ndim != 4:
        raise ValueError(
            f"model.kind: {m.kind!r} needs image inputs (n, C, H, W), got shape {tuple(x.shape)}"
        )
    return {
        "in_channels": x.shape[1],
        "image_size": tuple(x.shape[2:]),  # (H, W): images need not be square
        "out_dim": out_dim,
        "width": m.width,
        "depth": m.depth,
        "activation": m.activation,
        "parameterization": m.parameterization,
        "init_scale": m.init_scale,
        "readout": m.readout,
    }


def _cnn(m: ModelConfig, x: Tensor, out_dim: int, common: dict[str, Any]) -> nn.Module:
    return models.cnn(**_image(m, x, out_dim), **common)


def _resnet(m: ModelConfig, x: Tensor, out_dim: int, common: dict[str, Any]) -> nn.Module:
    return models.resnet(**_image(m, x, out_dim), skip=m.residual is not False, **common)


def _custom(m: ModelConfig, x: Tensor, out_dim: int, common: dict[str, Any]) -> nn.Module:
    """Call the user's factory with ``model.args`` (global RNG seeded with the trial seed)."""
    factory: FactoryRef = m.factory  # type: ignore[assignment]  # the config checks it is set
    torch.manual_seed(common["seed"])
    net = call_factory(factory, dict(m.args), "model.factory")
    return _user_model(f"model.factory {factory.ref!r}", net, x, out_dim, common)


def _registered(m: ModelConfig, x: Tensor, out_dim: int, common: dict[str, Any]) -> nn.Module:
    """Call the function registered as ``model.kind`` with ``model.args``, as :func:`_custom`."""
    entry = _registration(MODEL_REGISTRY.get(m.kind), m.kind, "model kind")
    torch.manual_seed(common["seed"])
    net = call_user(entry.fn, dict(m.args), entry.label)
    return _user_model(entry.label, net, x, out_dim, common)


def _registration(entry: Registered | None, name: str, what: str) -> Registered:
    if entry is None:  # registered in the parent when the config was validated, not here
        raise ValueError(
            f"{what} {name!r} is not registered in this process; register it before the "
            "workers start"
        )
    return entry


def _user_model(
    label: str, net: object, x: Tensor, out_dim: int, common: dict[str, Any]
) -> nn.Module:
    """Check that a user's function returned a module; move it; check its output fits."""
    if not isinstance(net, nn.Module):
        raise ValueError(
            f"{label} returned a {type(net).__name__}, not a torch.nn.Module; return the network"
        )
    dtype = common["dtype"]
    wider = sorted(
        {
            str(t.dtype).removeprefix("torch.")
            for t in itertools.chain(net.parameters(), net.buffers())
            if t.is_floating_point() and torch.finfo(t.dtype).bits > torch.finfo(dtype).bits
        }
    )
    net = net.to(dtype=dtype, device=common["device"])
    _check_output(label, net, x, out_dim)
    if wider:  # after the checks: a model refused for its output gets the error alone
        warnings.warn(
            f"{label} returned {' and '.join(wider)} parameters, which the trial's dtype "
            f"{str(dtype).removeprefix('torch.')} rounds; set dtype = '{wider[-1]}' "
            f"(--dtype {wider[-1]}) to keep them",
            UserWarning,
            stacklevel=2,
        )
    return net


def _check_output(label: str, net: nn.Module, x: Tensor, out_dim: int) -> None:
    """Refuse a model whose output on two inputs does not fit the targets' shape (one line)."""
    probe = x[:2]
    try:
        with torch.no_grad():
            out = net(probe)
    except Exception as err:  # the user's module: report any error in one line
        raise ValueError(
            f"{label}: the model fails on inputs of shape {tuple(probe.shape)} "
            f"(the data's x): {type(err).__name__}: {err}"
        ) from None
    fits = isinstance(out, Tensor) and out.shape[0] == probe.shape[0]
    fits = fits and (out.shape[1:] == (out_dim,) or (out_dim == 1 and out.ndim == 1))
    if not fits:
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(
            f"{label}: the model maps x of shape {tuple(probe.shape)} to {shape}, "
            f"but the targets need ({probe.shape[0]}, {out_dim}); give the model {out_dim} "
            "output(s)"
        )


_BUILT_IN: Mapping[str, ModelBuilder] = MappingProxyType(
    {
        "mlp": _mlp,
        "two_layer": _two_layer,
        "cnn": _cnn,
        "resnet": _resnet,
        "custom": _custom,
    }
)

MODELS: Mapping[str, ModelBuilder] = MappingProxyType(
    MergedView(_BUILT_IN, MODEL_REGISTRY, lambda entry: _registered)
)
"""``model.kind`` → builder: the built-in kinds, then the registered ones (read live); the kinds
a config accepts (:func:`gdscope.registration.model_kinds`)."""

FLAT_INPUTS = ("mlp", "two_layer")
"""Kinds that read each example as a vector: image data sets are flattened for them."""


def build_network(
    config: TrialConfig, x: Tensor, out_dim: int, dtype: torch.dtype, device: torch.device
) -> nn.Module:
    """Build ``config.model`` for inputs ``x`` and ``out_dim`` outputs, with its output wrapper."""
    m = config.model
    common = {"seed": config.seed, "dtype": dtype, "device": device}
    net = MODELS.get(m.kind, _registered)(m, x, out_dim, common)  # unknown: says why
    return models.wrap_output(
        net, activation=m.output_activation, scale=m.output_scale, center=m.center_output
    )


def load_data(
    config: TrialConfig, dtype: torch.dtype, device: torch.device
) -> tuple[Pair, Pair | None]:
    """Return the training set and the held-out set (``None`` if the data set has none).

    Raises:
        ValueError: a loader refused its arguments (``data (digits): n = 5000 is more than …``),
            or ``probes.test`` asks for the held-out set of a data set without one.

    """
    cfg = config.data
    seed = config.seed if cfg.seed is None else cfg.seed
    if cfg.name == "custom":
        train_set, eval_set = _custom_data(cfg, seed, dtype, device)
    elif cfg.name not in BUILT_IN_DATASETS:
        train_set, eval_set = _registered_data(cfg, seed, dtype, device)
    else:
        try:
            train_set, eval_set = _built_in_data(cfg, seed, dtype, device)
        except ValueError as error:
            raise ValueError(f"data ({cfg.name}): {error}") from None
    if eval_set is None and "test" in config.probes:
        source = f"factory {cfg.factory.ref!r}" if cfg.factory else f"data set {cfg.name!r}"
        raise ValueError(
            f"probes.test needs a held-out set, and {source} has none: use a data set with a "
            "test split (digits, mnist1d, cifar10, a loader that takes split, a factory that "
            "returns {'train': (x, y), 'test': (x, y)}) or remove probes.test (--probe test)"
        )
    if config.model.kind in FLAT_INPUTS:
        train_set = (train_set[0].flatten(1), train_set[1])
        if eval_set is not None:
            eval_set = (eval_set[0].flatten(1), eval_set[1])
    return train_set, eval_set


def _built_in_data(
    cfg: DataConfig, seed: int, dtype: torch.dtype, device: torch.device
) -> tuple[Pair, Pair | None]:
    loader = gsdata.DATASETS[cfg.name]
    accepted = cfg.loader_parameters()
    kwargs: dict[str, object] = {"seed": seed}
    kwargs.update(
        {k: v for k, v in (("n", cfg.n), ("d", cfg.d)) if k in accepted and v is not None}
    )
    kwargs.update(cfg.options)  # DataConfig checked that the loader takes each
    kwargs.update(dtype=dtype, device=device)
    train_set = _as_pair(loader(**kwargs, **({"split": "train"} if "split" in accepted else {})))
    if "split" not in accepted:
        return train_set, None
    try:
        eval_set = loader(**kwargs, split="test")
    except ValueError:  # fewer held-out rows than data.n (359 test digits): hold out them all
        eval_set = loader(**{**kwargs, "n": None}, split="test")
    return train_set, _as_pair(eval_set)


def _as_pair(result: object) -> Pair:
    x, y = result[0], result[1]  # type: ignore[index]
    return x, y


def _custom_data(
    cfg: DataConfig, seed: int, dtype: torch.dtype, device: torch.device
) -> tuple[Pair, Pair | None]:
    """Call the user's data factory: ``(x, y)`` or ``{"train": (x, y), "test": (x, y)}``."""
    factory: FactoryRef = cfg.factory  # type: ignore[assignment]  # the config checks it is set
    torch.manual_seed(seed)
    result = call_factory(factory, dict(cfg.args), "data.factory", seed=seed)
    return _user_data(f"data.factory {factory.ref!r}", result, dtype, device)


def _registered_data(
    cfg: DataConfig, seed: int, dtype: torch.dtype, device: torch.device
) -> tuple[Pair, Pair | None]:
    """Call the loader registered as ``data.name`` as a built-in one; its result as a factory's.

    It gets ``data.n`` / ``data.d`` when it takes them and they are not ``None``: the config
    holds the loader's own defaults where the study left them unset (``DataConfig``), and
    ``None`` for a default that is not a count, so that the loader applies it.
    """
    entry = _registration(DATASET_REGISTRY.get(cfg.name), cfg.name, "data set")
    taken = inspect.signature(entry.fn).parameters
    given = {"n": cfg.n, "d": cfg.d, "seed": seed, "dtype": dtype, "device": device}
    kwargs = {k: v for k, v in given.items() if k in taken and v is not None}
    kwargs.update(cfg.options)  # DataConfig checked that the loader takes each
    torch.manual_seed(seed)
    if "split" not in taken:
        return _user_data(entry.label, call_user(entry.fn, kwargs, entry.label), dtype, device)
    train, test = (call_user(entry.fn, {**kwargs, "split": s}, entry.label) for s in SPLITS)
    return (
        _tensors(entry.label, train, "train", dtype, device),
        _tensors(entry.label, test, "test", dtype, device),
    )


SPLITS = ("train", "test")


def _user_data(
    label: str, result: object, dtype: torch.dtype, device: torch.device
) -> tuple[Pair, Pair | None]:
    """Return a user's ``(x, y)`` or ``{"train": (x, y), "test": (x, y)}`` as tensors."""
    if isinstance(result, Mapping) and set(result) <= {"train", "test"} and "train" in result:
        train = _tensors(label, result["train"], "train", dtype, device)
        test = result.get("test")
        return train, None if test is None else _tensors(label, test, "test", dtype, device)
    return _tensors(label, result, "", dtype, device), None


def _tensors(label: str, pair: object, part: str, dtype: torch.dtype, device: torch.device) -> Pair:
    """``(x, y)`` as tensors: x in the trial's dtype; integer y as class labels, float y in dtype."""
    where = label + (f" ({part!r})" if part else "")
    if not (isinstance(pair, tuple | list) and len(pair) == 2):
        raise ValueError(
            f"{where} returned a {type(pair).__name__}; return (x, y) or "
            '{"train": (x, y), "test": (x, y)}'
        )
    x, y = (torch.as_tensor(np.asarray(v) if not isinstance(v, Tensor) else v) for v in pair)
    if x.ndim < 2 or y.ndim < 1 or x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ValueError(
            f"{where}: x of shape {tuple(x.shape)} and y of shape {tuple(y.shape)} do not "
            "pair; return x as (n, features...) and y as (n,) or (n, outputs) with the same n ≥ 1"
        )
    if not x.is_floating_point():
        x = x.to(torch.float64)
    y = y.to(device=device, dtype=torch.long if not y.is_floating_point() else dtype)
    return x.to(device=device, dtype=dtype), y


def output_count(y: Tensor, eval_set: tuple[Tensor, Tensor] | None) -> int:
    """Return the outputs a network needs: integer labels' class count (train and held-out), else y's columns."""
    if y.dtype == torch.long:
        top = int(y.max())
        if eval_set is not None:
            top = max(top, int(eval_set[1].max()))
        return top + 1
    return 1 if y.ndim == 1 else int(y.shape[1])
