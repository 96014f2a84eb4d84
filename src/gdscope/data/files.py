"""Loaders for dataset files the user already has: MNIST in IDX format, CIFAR-10 binary batches.

Nothing is downloaded and nothing is unpickled: the files are parsed as raw bytes with numpy, so
an untrusted file can at worst be rejected with a ``ValueError`` naming it.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np
import torch

from gdscope import _checks as check

from . import _common as c

PathLike = str | os.PathLike[str]

_IDX_IMAGES, _IDX_LABELS = 0x00000803, 0x00000801  # ubyte data, 3 dims / 1 dim
_GZIP_MAGIC = b"\x1f\x8b"
_CIFAR_SHAPE = (3, 32, 32)
_CIFAR_RECORD = 1 + 3 * 32 * 32
_CIFAR_FILES = {
    "train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
    "test": ("test_batch.bin",),
}
_CIFAR_SUBDIR = "cifar-10-batches-bin"


def _read(path: Path, what: str, magic: int | None = None) -> bytes:
    """Read the bytes of ``path``, gunzipped if they start with the gzip magic.

    With ``magic``, a gzip file's first four inflated bytes are checked before the rest is
    inflated, so a wrong file fails at once instead of after inflating all of it.
    """
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (expected {what})")
    with path.open("rb") as handle:
        gzipped = handle.read(2) == _GZIP_MAGIC
    if not gzipped:
        return path.read_bytes()
    try:
        with gzip.open(path, "rb") as stream:
            head = stream.read(4)
            if magic is not None and int.from_bytes(head, "big") != magic:
                return head  # the caller names the bad magic number
            return head + stream.read()
    except (OSError, EOFError, zlib.error) as err:
        raise ValueError(
            f"{path}: corrupt or truncated gzip data ({err}); expected {what}"
        ) from err


def _parse_idx(path: Path, magic: int, what: str) -> np.ndarray:
    """Parse an IDX file of unsigned bytes: magic, big-endian uint32 dims, then the data."""
    data = _read(path, what, magic)
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < 4 or int.from_bytes(data[:4], "big") != magic:
        seen = f"0x{int.from_bytes(data[:4], 'big'):08x}" if len(data) >= 4 else "nothing"
        raise ValueError(f"{path}: bad magic number {seen}, expected 0x{magic:08x} for {what}")
    if len(data) < header:
        raise ValueError(f"{path}: truncated header, {len(data)} bytes < {header} for {what}")
    dims = tuple(int(v) for v in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected, found = int(np.prod(dims)), len(data) - header
    if found != expected:
        problem = "truncated" if found < expected else "has trailing bytes"
        raise ValueError(
            f"{path}: {problem}: dims {dims} need {expected} data bytes, found {found} in {what}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _pixels(raw: np.ndarray, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """uint8 pixels to ``dtype`` in ``[0, 1]`` on ``device``."""
    return torch.from_numpy(np.ascontiguousarray(raw)).to(device=device, dtype=dtype) / 255.0


def load_mnist_idx(
    images_path: PathLike,
    labels_path: PathLike,
    *,
    n: int | None = None,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: c.Device = "cpu",
    classes: int = 10,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and labels from a pair of IDX files (MNIST, Fashion-MNIST, ...), plain or ``.gz``.

    IDX layout: a big-endian magic number ``0x00000803`` (unsigned bytes, 3 dims) for images or
    ``0x00000801`` (1 dim) for labels, one big-endian uint32 per dimension, then the bytes in
    row-major order. Gzip is detected from the content, not the name. Pixels are mapped to
    ``[0, 1]`` by ``x / 255``; images keep their ``rows × cols`` with one channel.

    Args:
        images_path: e.g. ``train-images-idx3-ubyte`` or ``train-images-idx3-ubyte.gz``.
        labels_path: e.g. ``train-labels-idx1-ubyte.gz``.
        n: number of rows to return, a seeded random subset; ``None`` for all, in file order.
        seed: seed of the subset (used only when ``n`` is given).
        dtype: floating-point dtype of ``x``.
        device: device of the returned tensors.
        classes: the number of classes; every label of the file must lie in ``0..classes-1``
            (MNIST and Fashion-MNIST: 10).

    Returns:
        ``(x, y)``: ``x`` float of shape ``(n, 1, rows, cols)``, ``y`` long of shape ``(n,)``.

    Raises:
        FileNotFoundError: if a file does not exist.
        ValueError: on a bad magic number, truncated or oversized data, corrupt gzip, image and
            label counts that differ, a label outside ``0..classes-1``, or ``n`` above the count.

    References:
        Y. LeCun, C. Cortes, C. J. C. Burges, "The MNIST database of handwritten digits" (file
        format section of the original distribution page).

    """
    seed, dtype, device = c.common(seed, dtype, device)
    classes = check.positive_int("classes", classes)
    images_path, labels_path = Path(images_path), Path(labels_path)
    images = _parse_idx(images_path, _IDX_IMAGES, "an IDX image file")
    labels = _parse_idx(labels_path, _IDX_LABELS, "an IDX label file")
    bad = np.flatnonzero(labels >= classes)  # uint8: never below 0
    if bad.size:
        raise ValueError(
            f"{labels_path}: label {labels[bad[0]]} at index {bad[0]} ({bad.size} of "
            f"{labels.size} labels) is outside 0..{classes - 1}; expected class indices "
            f"below classes={classes} (another data set's labels? set data.options.classes)"
        )
    if images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"{images_path} has {images.shape[0]} images but {labels_path} has "
            f"{labels.shape[0]} labels; expected the same count"
        )
    if images.shape[0] == 0:
        raise ValueError(f"{images_path} holds no images; expected at least one")

    rows = c.subsample(images.shape[0], n, seed, str(images_path))
    x = _pixels(images[rows][:, None], dtype, device)  # (n, 1, rows, cols)
    return x, c.to_labels(labels[rows], device)


def _cifar_files(path: Path, split: str) -> list[Path]:
    """List the batch files to read: ``path`` itself, or the split's batches in it."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such file or directory (expected a CIFAR-10 .bin)")
    folder = path / _CIFAR_SUBDIR if (path / _CIFAR_SUBDIR).is_dir() else path
    files = [folder / name for name in _CIFAR_FILES[split]]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(
            f"{folder}: missing {', '.join(missing)} (the binary CIFAR-10 {split} batches)"
        )
    return files


def _parse_cifar(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Parse records of 1 label byte + 3072 pixel bytes (red, green, blue planes, row-major)."""
    data = path.read_bytes()
    if not data or len(data) % _CIFAR_RECORD:
        raise ValueError(
            f"{path}: {len(data)} bytes is not a positive multiple of {_CIFAR_RECORD} (records of "
            f"1 label byte + 3×32×32 pixel bytes); truncated, or not the CIFAR-10 binary version"
        )
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, _CIFAR_RECORD)
    bad = np.flatnonzero(records[:, 0] > 9)
    if bad.size:
        raise ValueError(
            f"{path}: record {bad[0]} has label {records[bad[0], 0]}, expected 0..9 "
            f"(is this the Python pickle version? only the binary version is read)"
        )
    return records[:, 1:].reshape(-1, *_CIFAR_SHAPE), records[:, 0]


def load_cifar10(
    path: PathLike,
    split: str = "train",
    *,
    n: int | None = None,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: c.Device = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR-10 from its *binary* distribution (``cifar-10-binary.tar.gz``, extracted).

    ``path`` is one batch file (``data_batch_1.bin``; ``split`` is then ignored) or a directory
    holding ``data_batch_1..5.bin`` (``split="train"``) or ``test_batch.bin`` (``"test"``),
    directly or in a ``cifar-10-batches-bin`` subdirectory. Each record is one label byte then
    the 32×32 red, green and blue planes; pixels are mapped to ``[0, 1]`` by ``x / 255``. The
    Python (pickle) version is refused: unpickling an untrusted file can run code.

    Args:
        path: a ``.bin`` batch file or a directory of them.
        split: ``"train"`` or ``"test"`` when ``path`` is a directory.
        n: number of images to return, a seeded random subset; ``None`` for all, in file order.
        seed: seed of the subset (used only when ``n`` is given).
        dtype: floating-point dtype of ``x``.
        device: device of the returned tensors.

    Returns:
        ``(x, y)``: ``x`` float of shape ``(n, 3, 32, 32)``, ``y`` long of shape ``(n,)``.

    Raises:
        FileNotFoundError: if ``path`` or an expected batch file does not exist.
        ValueError: on an unknown split, a size that is not a whole number of records, a label
            above 9, or ``n`` above the count.

    References:
        A. Krizhevsky, "Learning Multiple Layers of Features from Tiny Images", 2009.

    """
    check.one_of("split", split, tuple(_CIFAR_FILES))
    seed, dtype, device = c.common(seed, dtype, device)
    path = Path(path)
    parts = [_parse_cifar(f) for f in _cifar_files(path, split)]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    rows = c.subsample(images.shape[0], n, seed, str(path))
    return _pixels(images[rows], dtype, device), c.to_labels(labels[rows], device)
