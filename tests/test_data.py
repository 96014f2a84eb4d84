"""Dataset loaders: shapes, dtypes, seeding, validation, synthetic and bundled sets, registry."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from _helpers import assert_close
from gdscope import data as D

# ---------------------------------------------------------------- cases: loader, kwargs, shapes
# (name, loader, kwargs, x shape, y shape, y is class labels)
CASES = [
    ("sphere", D.sphere, {"n": 7, "d": 5}, (7, 5), (7, 1), False),
    (
        "sphere_sign",
        D.sphere,
        {"n": 6, "d": 3, "target": "sign", "out_dim": 2},
        (6, 3),
        (6, 2),
        False,
    ),
    (
        "teacher",
        D.teacher_student,
        {"n": 9, "d": 4, "teacher_width": 6, "out_dim": 3, "noise": 0.1},
        (9, 4),
        (9, 3),
        False,
    ),
    (
        "mixture",
        D.gaussian_mixture,
        {"n": 12, "d": 5, "classes": 3, "separation": 2.0},
        (12, 5),
        (12,),
        True,
    ),
    ("separated", D.separated, {"n": 16, "d": 4, "delta": 0.1}, (16, 4), (16, 1), False),
    ("chebyshev", D.chebyshev, {"k": 5, "n": 20}, (20, 1), (20, 1), False),
    ("lasso", D.lasso_design, {"n": 30, "d": 10, "sparsity": 3}, (30, 10), (30, 1), False),
    ("digits", D.digits, {"n": 50}, (50, 64), (50,), True),
    ("mnist1d", D.mnist1d, {"n": 25}, (25, 40), (25,), True),
]
IDS = [case[0] for case in CASES]
RANDOM = [case for case in CASES if case[0] != "chebyshev"]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    ("name", "loader", "kwargs", "x_shape", "y_shape", "labels"), CASES, ids=IDS
)
def test_shapes_and_dtypes(name, loader, kwargs, x_shape, y_shape, labels, dtype):
    x, y = loader(**kwargs, dtype=dtype)
    assert tuple(x.shape) == x_shape and x.dtype == dtype and x.device.type == "cpu"
    assert tuple(y.shape) == y_shape
    assert y.dtype == (torch.long if labels else dtype)
    assert torch.isfinite(x).all()


@pytest.mark.parametrize(
    ("name", "loader", "kwargs", "x_shape", "y_shape", "labels"), CASES, ids=IDS
)
def test_device_is_honoured(name, loader, kwargs, x_shape, y_shape, labels):
    x, y = loader(**kwargs, device=torch.device("meta"))
    assert x.device.type == "meta" and y.device.type == "meta"
    assert tuple(x.shape) == x_shape and tuple(y.shape) == y_shape


@pytest.mark.parametrize(
    ("name", "loader", "kwargs", "x_shape", "y_shape", "labels"),
    RANDOM,
    ids=[case[0] for case in RANDOM],
)
def test_same_seed_same_bits_other_seed_other_data(name, loader, kwargs, x_shape, y_shape, labels):
    x1, y1 = loader(**kwargs, seed=3)
    x2, y2 = loader(**kwargs, seed=3)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    x3, _ = loader(**kwargs, seed=4)
    assert not torch.equal(x1, x3)


@pytest.mark.parametrize(
    ("name", "loader", "kwargs", "x_shape", "y_shape", "labels"), CASES, ids=IDS
)
def test_global_rng_state_untouched(name, loader, kwargs, x_shape, y_shape, labels):
    np_state, py_state, torch_state = (
        np.random.get_state(),
        random.getstate(),
        torch.get_rng_state(),
    )
    loader(**kwargs)
    after = np.random.get_state()
    assert all(np.array_equal(a, b) for a, b in zip(np_state, after, strict=True))
    assert random.getstate() == py_state
    assert torch.equal(torch.get_rng_state(), torch_state)


# ---------------------------------------------------------------- argument validation
BAD_ARGS = [
    (D.sphere, {"n": 0, "d": 3}, "n must be a positive integer, got 0"),
    (D.sphere, {"n": 2.5, "d": 3}, "n must be a positive integer, got 2.5"),
    (D.sphere, {"n": 4, "d": 3, "target": "gauss"}, "target must be one of"),
    (D.sphere, {"n": 4, "d": 3, "seed": -1}, "seed must be a non-negative integer, got -1"),
    (D.sphere, {"n": 4, "d": 3, "dtype": torch.int64}, "dtype must be a floating-point"),
    (D.sphere, {"n": 4, "d": 3, "device": "nonsense"}, "device must be"),
    (D.teacher_student, {"n": 4, "d": 3, "teacher_width": 2, "noise": -1.0}, "noise must be"),
    (D.teacher_student, {"n": 4, "d": 3, "teacher_width": 2, "activation": "gelu"}, "activation"),
    (D.gaussian_mixture, {"n": 4, "d": 2, "classes": 3, "separation": 1.0}, "classes must be"),
    (D.separated, {"n": 1, "d": 3, "delta": 0.1}, "n must be an integer ≥ 2"),
    (D.separated, {"n": 8, "d": 3, "delta": -0.1}, "delta must be"),
    (D.chebyshev, {"k": -1}, "k must be a non-negative integer"),
    (D.lasso_design, {"d": 5, "sparsity": 6}, "sparsity must be an integer in"),
    (D.digits, {"split": "val"}, "split must be one of"),
    (D.digits, {"classes": (3, 10)}, "classes must be"),
    (D.digits, {"test_fraction": 1.0}, "test_fraction must be"),
    (
        D.digits,
        {"n": 5000},
        "n = 5000 is more than the 1438 rows available in digits split 'train'; use n ≤ 1438",
    ),
    (D.digits, {"normalize": "l2"}, "normalize must be one of"),
    (D.mnist1d, {"split": "all"}, "split must be one of"),
]


@pytest.mark.parametrize(("loader", "kwargs", "message"), BAD_ARGS)
def test_bad_arguments_raise_one_line_value_errors(loader, kwargs, message):
    with pytest.raises(ValueError, match=message) as info:
        loader(**kwargs)
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------- synthetic
def test_sphere_rows_are_unit_norm_and_sign_targets_are_pm1():
    x, y = D.sphere(200, 7, target="sign", out_dim=3, dtype=torch.float64, seed=1)
    assert_close(x.norm(dim=1), torch.ones(200), rtol=1e-14, what="row norms")
    assert set(y.unique().tolist()) == {-1.0, 1.0}


def test_teacher_is_shared_across_n():
    x_small, y_small = D.teacher_student(5, 4, 8, dtype=torch.float64)
    x_big, y_big = D.teacher_student(50, 4, 8, dtype=torch.float64)
    assert torch.equal(x_small, x_big[:5]) and torch.equal(y_small, y_big[:5])


def test_teacher_linear_targets_are_linear_in_x():
    x, y = D.teacher_student(40, 6, 10, activation="linear", dtype=torch.float64)
    w = torch.linalg.lstsq(x, y).solution
    assert_close(x @ w, y, rtol=0, atol=1e-12, what="linear teacher")


def test_mixture_means_are_separation_apart():
    x, y = D.gaussian_mixture(30, 6, 4, separation=3.0, std=0.0, dtype=torch.float64)
    assert torch.bincount(y).tolist() == [8, 8, 7, 7]
    means = torch.stack([x[y == k][0] for k in range(4)])
    dist = torch.cdist(means, means)
    assert_close(dist[~torch.eye(4, dtype=torch.bool)], torch.full((12,), 3.0), rtol=1e-12)


# ---------------------------------------------------------------- separation
@pytest.mark.parametrize("delta", [0.0, 1e-4, 0.03, 0.2, 0.35])
def test_separated_min_opposite_distance_is_delta(delta):
    x, y = D.separated(64, 4, delta, dtype=torch.float64, seed=2)
    assert_close(x.norm(dim=1), torch.ones(64), rtol=1e-14, what="row norms")
    assert set(y.flatten().tolist()) == {-1.0, 1.0}
    assert_close(D.min_opposite_distance(x, y), delta, rtol=0, atol=1e-13, what="delta")
    opposite = y != y.T
    dist = torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist")
    close = (dist[opposite] <= delta + 1e-9).sum().item()
    assert close == 2  # the one pair, counted as (i, j) and (j, i)


def test_separated_delta_zero_is_an_exact_duplicate_with_opposite_label():
    x, y = D.separated(10, 3, 0.0)
    assert D.min_opposite_distance(x, y) == 0.0
    i, j = (
        (torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist") == 0).triu(1).nonzero()[0]
    )
    assert torch.equal(x[i], x[j]) and y[i].item() == -y[j].item()


def test_separated_float32_is_close_to_delta():
    x, y = D.separated(32, 8, 0.05, seed=5)
    assert_close(D.min_opposite_distance(x, y), 0.05, rtol=0, atol=1e-6)


def test_separated_sweep_moves_one_point():
    x1, y1 = D.separated(20, 5, 0.1, dtype=torch.float64)
    x2, y2 = D.separated(20, 5, 0.2, dtype=torch.float64)
    assert torch.equal(y1, y2)
    assert (x1 != x2).any(dim=1).sum().item() == 1


def test_separated_refuses_delta_it_cannot_guarantee():
    with pytest.raises(ValueError, match=r"delta must be < 0\.\d+ for n=64, d=4, seed=0"):
        D.separated(64, 4, 1.5)


def test_min_opposite_distance_by_hand():
    x = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 1.0], [10.0, 0.0]])
    assert_close(
        D.min_opposite_distance(x, torch.tensor([1.0, -1.0, 1.0, -1.0])),
        np.hypot(3.0, 3.0),
        rtol=1e-6,
        atol=1e-12,
    )
    assert_close(D.min_opposite_distance(x, torch.tensor([0, 1, 2, 0])), 1.0, rtol=1e-6, atol=1e-12)
    assert D.min_opposite_distance(x, torch.ones(4, 1)) == float("inf")
    with pytest.raises(ValueError, match="y must have shape"):
        D.min_opposite_distance(x, torch.ones(4, 2))


# ---------------------------------------------------------------- chebyshev, lasso
@pytest.mark.parametrize(("k", "n"), [(0, 5), (1, 7), (3, 20), (5, 20), (8, 33)])
def test_chebyshev_matches_numpy(k, n):
    x, y = D.chebyshev(k, n, dtype=torch.float64)
    grid = np.linspace(-1.0, 1.0, n)
    assert_close(x.flatten(), torch.from_numpy(grid), rtol=0, atol=1e-15, what="grid")
    expected = np.polynomial.chebyshev.chebval(grid, [0] * k + [1])
    assert_close(y.flatten(), torch.from_numpy(expected), rtol=0, atol=1e-12, what=f"T_{k}")


def test_lasso_truth_and_noiseless_design():
    w = D.lasso_truth(12, 4, seed=7, dtype=torch.float64)
    assert tuple(w.shape) == (12, 1) and (w != 0).sum().item() == 4
    assert set(w[w != 0].abs().tolist()) == {1.0}
    x, y = D.lasso_design(30, 12, 4, noise=0.0, seed=7, dtype=torch.float64)
    assert_close(y, x @ w, rtol=1e-12, atol=1e-12, what="y = Xw")


def test_lambda_max_is_the_critical_lasso_penalty():
    from sklearn.linear_model import Lasso

    x, y = D.lasso_design(dtype=torch.float64)
    lam = D.lambda_max(x, y)
    assert_close(lam, (x.T @ y / x.shape[0]).abs().max().item(), rtol=1e-14, atol=1e-12)
    X, t = x.numpy(), y.numpy().ravel()
    above = Lasso(alpha=lam * 1.0001, fit_intercept=False, tol=1e-10, max_iter=100_000).fit(X, t)
    below = Lasso(alpha=lam * 0.9, fit_intercept=False, tol=1e-10, max_iter=100_000).fit(X, t)
    assert np.all(above.coef_ == 0)
    assert np.count_nonzero(below.coef_) > 0


# ---------------------------------------------------------------- digits, mnist1d
def test_digits_splits_partition_the_dataset():
    _, y_train = D.digits(split="train")
    _, y_test = D.digits(split="test")
    _, y_all = D.digits(split="all")
    assert y_train.numel() + y_test.numel() == y_all.numel() == 1797
    assert 0.19 < y_test.numel() / 1797 < 0.21
    assert torch.equal(torch.bincount(y_train) + torch.bincount(y_test), torch.bincount(y_all))


def test_digits_classes_subset_is_reindexed():
    from sklearn.datasets import load_digits

    x, y = D.digits(classes=(8, 3), split="all", normalize=None, dtype=torch.float64)
    raw = load_digits()
    eights = {row.tobytes() for row in raw.data[raw.target == 8].astype(np.float64)}
    threes = {row.tobytes() for row in raw.data[raw.target == 3].astype(np.float64)}
    assert set(y.tolist()) == {0, 1}
    assert all(row.tobytes() in eights for row in x[y == 0].numpy())
    assert all(row.tobytes() in threes for row in x[y == 1].numpy())


@pytest.mark.parametrize("normalize", ["unit", "minmax", "standard", None])
def test_digits_normalizations(normalize):
    x, _ = D.digits(normalize=normalize, dtype=torch.float64)
    if normalize == "unit":
        assert_close(x.norm(dim=1), torch.ones(x.shape[0]), rtol=1e-12)
    elif normalize == "minmax":
        assert x.min() >= 0 and x.max() <= 1
    elif normalize == "standard":
        assert_close(x.mean(0), torch.zeros(64), atol=1e-10, what="train mean")
    else:
        assert x.max() == 16


def test_mnist1d_splits_and_labels():
    x_train, y_train = D.mnist1d(n=100, split="train", seed=1)
    x_test, y_test = D.mnist1d(n=30, split="test", seed=1)
    assert tuple(x_train.shape) == (100, 40) and tuple(x_test.shape) == (30, 40)
    assert torch.equal(torch.bincount(y_train), torch.full((10,), 10))
    assert y_test.min() >= 0 and y_test.max() <= 9
    assert not torch.isin(x_test[:, 20], x_train[:, 20]).any()


# ---------------------------------------------------------------- registry
def test_registry_names_and_dispatch():
    assert set(D.DATASETS) == {
        "sphere",
        "sphere_images",
        "teacher_student",
        "gaussian_mixture",
        "separated",
        "chebyshev",
        "lasso",
        "digits",
        "mnist1d",
        "mnist_idx",
        "cifar10",
    }
    x, y = D.load("sphere", n=4, d=3, seed=2)
    x2, y2 = D.sphere(4, 3, seed=2)
    assert torch.equal(x, x2) and torch.equal(y, y2)


def test_registry_unknown_name_suggests():
    with pytest.raises(
        ValueError,
        match=r"unknown dataset 'spehre'; accepted: sphere, .*; "
        r"did you mean 'sphere'\?",
    ):
        D.load("spehre", n=4, d=3)
    with pytest.raises(ValueError, match=r"unknown dataset 'zzz'; accepted: .*cifar10$"):
        D.load("zzz")


def test_sphere_images_are_unit_norm_reshaped_sphere_points():
    x, y = D.sphere_images(5, channels=2, size=3, seed=4, dtype=torch.float64)
    flat, labels = D.sphere(5, 18, target="sign", seed=4, dtype=torch.float64)
    assert tuple(x.shape) == (5, 2, 3, 3)
    assert torch.equal(x.reshape(5, -1), flat) and torch.equal(y, labels)
    assert_close(x.flatten(1).norm(dim=1), torch.ones(5), rtol=1e-14)
    with pytest.raises(ValueError, match="channels must be a positive integer, got 0"):
        D.sphere_images(5, channels=0)
