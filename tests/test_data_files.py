"""Loaders of user files: MNIST IDX images and labels (plain and gzip), CIFAR-10 binary batches."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch

from gdscope import data as D


# ---------------------------------------------------------------- user files: IDX, CIFAR-10 binary
def _write_idx(path, array, magic, compress=False):
    header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(payload) if compress else payload)
    return path


@pytest.fixture
def idx_files(tmp_path):
    gen = np.random.default_rng(0)
    images = gen.integers(0, 256, size=(6, 5, 4), dtype=np.uint8)
    labels = gen.integers(0, 10, size=6, dtype=np.uint8)
    return images, labels, tmp_path


@pytest.mark.parametrize("compress", [False, True])
def test_idx_round_trip(idx_files, compress):
    images, labels, tmp = idx_files
    ip = _write_idx(tmp / "images.idx", images, 0x803, compress)
    lp = _write_idx(tmp / "labels.idx", labels, 0x801, compress)
    x, y = D.load_mnist_idx(ip, lp, dtype=torch.float64)
    assert tuple(x.shape) == (6, 1, 5, 4) and y.dtype == torch.long
    assert np.array_equal(np.rint(x.numpy() * 255).astype(np.uint8)[:, 0], images)
    assert np.array_equal(y.numpy(), labels)
    xs, _ = D.load_mnist_idx(ip, lp, n=3, seed=1, dtype=torch.float64)
    assert tuple(xs.shape) == (3, 1, 5, 4)
    assert all((x == row).all(dim=(1, 2, 3)).any() for row in xs)


def test_idx_errors_name_the_file(idx_files):
    images, labels, tmp = idx_files
    ip = _write_idx(tmp / "images.idx", images, 0x803)
    lp = _write_idx(tmp / "labels.idx", labels, 0x801)
    with pytest.raises(
        ValueError,
        match=r"labels\.idx: bad magic number 0x00000801, expected 0x00000803 for an IDX image",
    ):
        D.load_mnist_idx(lp, lp)
    short = tmp / "short.idx"
    short.write_bytes(ip.read_bytes()[:-7])
    with pytest.raises(ValueError, match=r"short\.idx: truncated: dims \(6, 5, 4\) need 120"):
        D.load_mnist_idx(short, lp)
    broken = tmp / "broken.gz"
    broken.write_bytes(gzip.compress(ip.read_bytes())[:-10])
    with pytest.raises(ValueError, match=r"broken\.gz: corrupt or truncated gzip"):
        D.load_mnist_idx(broken, lp)
    fewer = _write_idx(tmp / "fewer.idx", labels[:4], 0x801)
    with pytest.raises(ValueError, match=r"has 6 images but .*fewer\.idx has 4 labels"):
        D.load_mnist_idx(ip, fewer)
    with pytest.raises(FileNotFoundError, match=r"missing\.idx: no such file"):
        D.load_mnist_idx(tmp / "missing.idx", lp)
    empty_images = _write_idx(tmp / "none.idx", images[:0], 0x803)
    empty_labels = _write_idx(tmp / "nolabels.idx", labels[:0], 0x801)
    with pytest.raises(ValueError, match=r"none\.idx holds no images"):
        D.load_mnist_idx(empty_images, empty_labels)


def test_idx_labels_outside_the_classes_are_refused_naming_the_file_and_value(idx_files):
    images, labels, tmp = idx_files
    ip = _write_idx(tmp / "images.idx", images, 0x803)
    bad = labels.copy()
    bad[3] = 200
    lp = _write_idx(tmp / "labels.idx", bad, 0x801, compress=True)
    with pytest.raises(ValueError) as info:
        D.load_mnist_idx(ip, lp)
    message = str(info.value)
    assert "\n" not in message
    assert str(lp) in message and "label 200 at index 3" in message and "0..9" in message
    # the declared number of classes bounds the labels too
    three = _write_idx(tmp / "three.idx", np.array([0, 1, 2, 3, 1, 0]), 0x801)
    with pytest.raises(ValueError, match=r"three\.idx: label 3 at index 3 .* outside 0\.\.2"):
        D.load_mnist_idx(ip, three, classes=3)
    _, y = D.load_mnist_idx(ip, three, classes=4)
    assert y.tolist() == [0, 1, 2, 3, 1, 0]
    with pytest.raises(ValueError, match="classes must be a positive integer, got 0"):
        D.load_mnist_idx(ip, three, classes=0)


def test_a_gzip_file_of_the_wrong_kind_is_refused_before_it_is_inflated(idx_files, monkeypatch):
    _, labels, tmp = idx_files
    wrong = _write_idx(tmp / "labels.idx.gz", labels, 0x801, compress=True)
    lp = _write_idx(tmp / "labels.idx", labels, 0x801)
    inflated: list[int] = []
    real_read = gzip.GzipFile.read

    def counting(self, size=-1):
        data = real_read(self, size)
        inflated.append(len(data))
        return data

    monkeypatch.setattr(gzip.GzipFile, "read", counting)
    with pytest.raises(ValueError, match="bad magic number 0x00000801"):
        D.load_mnist_idx(wrong, lp)
    assert inflated == [4]  # the header only, not the file


def _cifar_records(count, seed):
    gen = np.random.default_rng(seed)
    labels = gen.integers(0, 10, size=count, dtype=np.uint8)
    pixels = gen.integers(0, 256, size=(count, 3, 32, 32), dtype=np.uint8)
    raw = np.concatenate([labels[:, None], pixels.reshape(count, -1)], axis=1).tobytes()
    return raw, pixels, labels


def test_cifar_single_file_round_trip(tmp_path):
    raw, pixels, labels = _cifar_records(3, 0)
    (tmp_path / "data_batch_1.bin").write_bytes(raw)
    x, y = D.load_cifar10(tmp_path / "data_batch_1.bin", dtype=torch.float64)
    assert tuple(x.shape) == (3, 3, 32, 32) and y.dtype == torch.long
    assert np.array_equal(np.rint(x.numpy() * 255).astype(np.uint8), pixels)
    assert np.array_equal(y.numpy(), labels)


def test_cifar_directory_splits(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    parts = [_cifar_records(2, seed) for seed in range(6)]
    for i, (raw, _, _) in enumerate(parts[:5], start=1):
        (folder / f"data_batch_{i}.bin").write_bytes(raw)
    (folder / "test_batch.bin").write_bytes(parts[5][0])
    x, y = D.load_cifar10(tmp_path, split="train")
    assert tuple(x.shape) == (10, 3, 32, 32)
    assert np.array_equal(y.numpy(), np.concatenate([p[2] for p in parts[:5]]))
    x_test, _ = D.load_cifar10(folder, split="test", dtype=torch.float64)
    assert np.array_equal(np.rint(x_test.numpy() * 255).astype(np.uint8), parts[5][1])


def test_cifar_errors_name_the_file(tmp_path):
    raw, _, _ = _cifar_records(2, 0)
    (tmp_path / "cut.bin").write_bytes(raw[:-1])
    with pytest.raises(
        ValueError, match=r"cut\.bin: 6145 bytes is not a positive multiple of 3073"
    ):
        D.load_cifar10(tmp_path / "cut.bin")
    (tmp_path / "label.bin").write_bytes(b"\x80" + raw[1:])
    with pytest.raises(ValueError, match=r"label\.bin: record 0 has label 128, expected 0\.\.9"):
        D.load_cifar10(tmp_path / "label.bin")
    with pytest.raises(FileNotFoundError, match=r"missing data_batch_1\.bin"):
        D.load_cifar10(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such file or directory"):
        D.load_cifar10(tmp_path / "nowhere")
