"""Datasets of the examples: scikit-learn's 8x8 digits and iris (shipped with scikit-learn, no
download), and MNIST from IDX files a user already has on disk.

Every loader returns (x_train, y_train, x_test, y_test) as float32 / int64 tensors. The
train/test split of the scikit-learn sets is fixed (it does not depend on --seed), so that runs
with different seeds are scored on the same test set."""
import gzip
import os
import struct

import torch

_SPLIT_SEED = 20181203  # the split of the scikit-learn sets, fixed once


def _split(x, y, test_fraction):
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(_SPLIT_SEED))
    n_test = int(round(test_fraction * len(x)))
    test, train = perm[:n_test], perm[n_test:]
    return x[train], y[train], x[test], y[test]


def digits(test_fraction=0.2):
    """scikit-learn's 1797 8x8 digit images, (N, 1, 8, 8) scaled to [0, 1]; 10 classes."""
    from sklearn.datasets import load_digits
    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    return _split(x, torch.tensor(d.target, dtype=torch.int64), test_fraction)


def iris(test_fraction=0.3):
    """scikit-learn's iris: 150 samples of 4 features, standardised by the training statistics; 3 classes."""
    from sklearn.datasets import load_iris
    d = load_iris()
    xtr, ytr, xte, yte = _split(torch.tensor(d.data, dtype=torch.float32), torch.tensor(d.target), test_fraction)
    mean, std = xtr.mean(0), xtr.std(0)
    return (xtr - mean) / std, ytr, (xte - mean) / std, yte


_MNIST = {"train-images": ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
          "train-labels": ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
          "test-images": ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
          "test-labels": ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte")}


def _find(data_dir, names):
    for name in names:
        for candidate in (name, name + ".gz"):
            path = os.path.join(data_dir, candidate)
            if os.path.exists(path):
                return path
    raise ValueError("--data-dir %s has no %s (the MNIST IDX files, optionally .gz)" % (data_dir, names[0]))


def read_idx(path):
    """An IDX file (the MNIST format: magic, dimensions, big-endian unsigned bytes) as a uint8 tensor."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError("%s is not an IDX file of unsigned bytes" % path)
    ndim = raw[3]
    shape = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    count = 1
    for s in shape:
        count *= s
    body = raw[4 + 4 * ndim:]
    if len(body) != count:
        raise ValueError("%s: header says %s (%d bytes), the file holds %d" % (path, shape, count, len(body)))
    return torch.frombuffer(bytearray(body), dtype=torch.uint8).reshape(shape)


def mnist(data_dir):
    """MNIST from the four IDX files in data_dir: (N, 1, 28, 28) scaled to [0, 1]."""
    if not os.path.isdir(data_dir):
        raise ValueError("--data-dir %s is not a directory" % data_dir)
    paths = {k: _find(data_dir, names) for k, names in _MNIST.items()}
    images = {k: read_idx(paths[k]).to(torch.float32).unsqueeze(1) / 255.0 for k in ("train-images", "test-images")}
    labels = {k: read_idx(paths[k]).to(torch.int64) for k in ("train-labels", "test-labels")}
    return images["train-images"], labels["train-labels"], images["test-images"], labels["test-labels"]


def images(data_dir=None):
    """The image classification data: MNIST from data_dir when given, the 8x8 digits otherwise."""
    return mnist(data_dir) if data_dir else digits()
