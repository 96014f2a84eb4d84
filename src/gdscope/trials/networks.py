"""The network and data set of a network trial: ``MODELS`` (kind → builder) and the data loaders.

``MODELS`` maps ``model.kind`` to a builder ``(model config, x, outputs, seed, dtype, device) →
nn.Module``: the four built-in networks of :mod:`gdscope.models` and ``"custom"``, the user's
factory (:mod:`gdscope.factories`). Input and output sizes come from the data: the input shape
from ``x``, the number of outputs from the targets (class count for integer labels, columns for
float targets). ``mlp`` and ``two_layer`` read flattened inputs, ``cnn`` and ``resnet`` images
``(n, C, H, W)``; a custom model gets ``x`` as its data factory returns it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from gdscope import data as gsdata
from gdscope import models
from gdscope.config import DataConfig, ModelConfig, TrialConfig
from gdscope.factories import FactoryRef, call_factory

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
        x.shape[1], m.width, train_outer=m.train_outer, init_scale=m.init_scale, **common
    )


def _mlp(m: ModelConfig, x: Tensor, out_dim: int, common: dict[str, Any]) -> nn.Module:
    return models.mlp(
        x.shape[1],
        m.width,
        m.depth,
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
        "image_size": x.shape[2],
        "num_classes": out_dim,
        "channels": m.width,
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
    if not isinstance(net, nn.Module):
        raise ValueError(
            f"model.factory {factory.ref!r} returned a {type(net).__name__}, not a "
            "torch.nn.Module; return the network"
        )
    net = net.to(dtype=common["dtype"], device=common["device"])
    _check_output(factory.ref, net, x, out_dim)
    return net


def _check_output(ref: str, net: nn.Module, x: Tensor, out_dim: int) -> None:
    """Refuse a model whose output on two inputs does not fit the targets' shape (one line)."""
    probe = x[:2]
    try:
        with torch.no_grad():
            out = net(probe)
    except Exception as err:  # the user's module: report any error in one line
        raise ValueError(
            f"model.factory {ref!r}: the model fails on inputs of shape {tuple(probe.shape)} "
            f"(the data's x): {type(err).__name__}: {err}"
        ) from None
    fits = isinstance(out, Tensor) and out.shape[0] == probe.shape[0]
    fits = fits and (out.shape[1:] == (out_dim,) or (out_dim == 1 and out.ndim == 1))
    if not fits:
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(
            f"model.factory {ref!r}: the model maps x of shape {tuple(probe.shape)} to {shape}, "
            f"but the targets need ({probe.shape[0]}, {out_dim}); give the model {out_dim} "
            "output(s)"
        )


MODELS: dict[str, ModelBuilder] = {
    "mlp": _mlp,
    "two_layer": _two_layer,
    "cnn": _cnn,
    "resnet": _resnet,
    "custom": _custom,
}
"""``model.kind`` → builder. The kinds a config accepts are ``ModelConfig.kind``'s."""

FLAT_INPUTS = ("mlp", "two_layer")
"""Kinds that read each example as a vector: image data sets are flattened for them."""


def build_network(
    config: TrialConfig, x: Tensor, out_dim: int, dtype: torch.dtype, device: torch.device
) -> nn.Module:
    """Build ``config.model`` for inputs ``x`` and ``out_dim`` outputs, with its output wrapper."""
    m = config.model
    common = {"seed": config.seed, "dtype": dtype, "device": device}
    net = MODELS[m.kind](m, x, out_dim, common)
    return models.wrap_output(
        net, activation=m.output_activation, scale=m.output_scale, center=m.center_output
    )


def load_data(
    config: TrialConfig, dtype: torch.dtype, device: torch.device
) -> tuple[Pair, Pair | None]:
    """Return the training set and the held-out set (``None`` if the data set has none)."""
    cfg = config.data
    seed = config.seed if cfg.seed is None else cfg.seed
    if cfg.name == "custom":
        train_set, eval_set = _custom_data(cfg, seed, dtype, device)
    else:
        train_set, eval_set = _built_in_data(cfg, seed, dtype, device)
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
    if isinstance(result, Mapping) and set(result) <= {"train", "test"} and "train" in result:
        train = _tensors(factory.ref, result["train"], "train", dtype, device)
        test = result.get("test")
        return train, None if test is None else _tensors(factory.ref, test, "test", dtype, device)
    return _tensors(factory.ref, result, "", dtype, device), None


def _tensors(ref: str, pair: object, part: str, dtype: torch.dtype, device: torch.device) -> Pair:
    """``(x, y)`` as tensors: x in the trial's dtype; integer y as class labels, float y in dtype."""
    where = f"data.factory {ref!r}" + (f" ({part!r})" if part else "")
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
