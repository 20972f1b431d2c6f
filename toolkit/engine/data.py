"""Offline supervised tasks for proxy-model experiments.

Every task is generated locally or shipped inside an installed package or this
repository; nothing is downloaded. Each :class:`Task` holds a train and a validation
split as float32 input matrices of shape ``(n, d_in)`` and labels or targets:

* classification: ``y`` has shape ``(n,)``, dtype int64, values in ``[0, d_out)``;
* regression: ``y`` has shape ``(n, d_out)``, dtype float32;
* language (next-token prediction): ``x`` and ``y`` are int64 token ids of shape
  ``(n, d_in)``, ``d_in`` the sequence length, ``y`` the token after each position of
  ``x``; ``d_out`` is the vocabulary size. Not standardised.

Inputs are standardised per feature with the *train* split's mean and (population)
standard deviation; features whose train standard deviation is below ``1e-6`` are only
centred (their scale is taken as 1), so constant features stay finite and zero.

Available tasks (:data:`toolkit.engine.catalogue.TASKS`):

``"mnist1d"``
    MNIST-1D (Greydanus, 2020, "Scaling down deep learning", arXiv:2011.14439), a
    1-D analogue of MNIST: 40-sample signals, 10 classes. 10,000 samples generated with
    the ``mnist1d`` package's defaults otherwise (generation seed 42, train split 0.8):
    8,000 train / 2,000 validation. The generated arrays are cached on disk, see
    :func:`cache_dir`.
``"digits"``
    scikit-learn's shipped 8x8 handwritten digits (1,797 samples, 64 pixel intensities
    in 0..16, 10 classes), split 80/20 by a fixed permutation: 1,438 train / 359
    validation.
``"teacher"``
    Teacher-student regression: ``x ~ N(0, I_32)``, 8,192 train / 2,048 validation,
    ``y = W2 tanh(W1 x) + 0.1 * noise`` with a fixed random teacher of hidden width 64
    and output dimension 1 (no biases, entries of ``W1`` and ``W2`` drawn from
    ``N(0, 1/fan_in)``, noise standard normal). Drawn from a ``torch.Generator`` seeded by
    the ``seed`` argument of :func:`load_task`.
``"chars"``
    Character-level language modelling on Python's language reference (the help topics
    of the standard library's ``pydoc_data``, PSF licence), committed as
    ``data/chars/corpus.txt`` (268 KB, 94 distinct characters): sequences of 64
    characters, 3,768 train / 418 validation, the last 10% of the text being the
    validation split. See :mod:`toolkit.engine.text`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

from toolkit.engine.catalogue import TASKS, TEACHER_D_IN, TEACHER_D_OUT, TEACHER_HIDDEN
from toolkit.errors import InputError
from toolkit.io import write_atomically
from toolkit.paths import cache_dir

__all__ = ["Task", "cache_dir", "load_task"]

_KINDS = ("classification", "regression", "language")
_STD_FLOOR = 1e-6

# MNIST-1D generation: the package's defaults except for the number of samples.
MNIST1D_NUM_SAMPLES = 10_000
# Bump when the layout of the cache file changes.
_CACHE_FORMAT = 1

# Fixed permutation seed for the digits split (independent of ``load_task(seed=...)``).
_DIGITS_SPLIT_SEED = 0
_DIGITS_TRAIN_FRACTION = 0.8

TEACHER_N_TRAIN = 8192
TEACHER_N_VAL = 2048
TEACHER_NOISE_STD = 0.1


@dataclass(frozen=True)
class Task:
    """A supervised task with a train and a validation split.

    Attributes:
        name: task name, one of :data:`~toolkit.engine.catalogue.TASKS`.
        x_train: ``(n_train, d_in)`` float32 inputs, standardised with train statistics
            (language: int64 token ids).
        y_train: ``(n_train,)`` int64 class labels (classification), ``(n_train, d_out)``
            float32 targets (regression) or ``(n_train, d_in)`` int64 next tokens (language).
        x_val: ``(n_val, d_in)`` float32 inputs, standardised with train statistics.
        y_val: ``(n_val,)`` or ``(n_val, d_out)``, as ``y_train``.
        kind: ``"classification"``, ``"regression"`` or ``"language"``.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    kind: str

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise InputError(f"kind={self.kind!r} is not one of {_quoted(_KINDS)}")
        for split, x, y in (("train", self.x_train, self.y_train), ("val", self.x_val, self.y_val)):
            if self.kind == "language":
                tokens = x.ndim == 2 and x.dtype == torch.int64
                if not tokens or (y.shape, y.dtype) != (x.shape, x.dtype):
                    raise InputError(
                        f"language x_{split} and y_{split} must be int64 tensors of one 2-D "
                        f"shape, got {tuple(x.shape)} {x.dtype} and {tuple(y.shape)} {y.dtype}"
                    )
                continue
            if x.ndim != 2 or x.dtype != torch.float32:
                raise InputError(
                    f"x_{split} must be a 2-D float32 tensor, got shape {tuple(x.shape)} "
                    f"and dtype {x.dtype}"
                )
            if y.shape[0] != x.shape[0]:
                raise InputError(f"x_{split} has {x.shape[0]} rows but y_{split} has {y.shape[0]}")
            if self.kind == "classification" and (y.ndim != 1 or y.dtype != torch.int64):
                raise InputError(
                    f"classification y_{split} must be a 1-D int64 tensor, got shape "
                    f"{tuple(y.shape)} and dtype {y.dtype}"
                )
            if self.kind == "regression" and (y.ndim != 2 or y.dtype != torch.float32):
                raise InputError(
                    f"regression y_{split} must be a 2-D float32 tensor, got shape "
                    f"{tuple(y.shape)} and dtype {y.dtype}"
                )
        if self.x_train.shape[1] != self.x_val.shape[1]:
            raise InputError("x_train and x_val have different numbers of features")

    @property
    def d_in(self) -> int:
        """Number of input features."""
        return int(self.x_train.shape[1])

    @property
    def d_out(self) -> int:
        """Number of classes (classification), target dimensions (regression) or token ids
        (language: one more than the largest id in either split)."""
        if self.kind == "language":
            splits = (self.x_train, self.y_train, self.x_val, self.y_val)
            return max(int(t.max()) for t in splits) + 1
        if self.kind == "classification":
            return int(max(int(self.y_train.max()), int(self.y_val.max()))) + 1
        return int(self.y_train.shape[1])

    @property
    def n_train(self) -> int:
        """Number of training examples."""
        return int(self.x_train.shape[0])

    @property
    def n_val(self) -> int:
        """Number of validation examples."""
        return int(self.x_val.shape[0])

    def to(self, device: torch.device | str) -> Task:
        """Return a copy with all tensors on ``device``."""
        return dataclasses.replace(
            self,
            x_train=self.x_train.to(device),
            y_train=self.y_train.to(device),
            x_val=self.x_val.to(device),
            y_val=self.y_val.to(device),
        )


def load_task(name: str, *, device: torch.device | str = "cpu", seed: int = 0) -> Task:
    """Load (or generate) the task called ``name``, with its tensors on ``device``.

    ``seed`` only affects generated tasks (``"teacher"``); ``"mnist1d"``, ``"digits"`` and
    ``"chars"`` are fixed data sets with fixed splits. The same call always returns
    identical tensors.

    Raises:
        ValueError: if ``name`` is not one of :data:`~toolkit.engine.catalogue.TASKS`.
    """
    if name == "mnist1d":
        x_train, y_train, x_val, y_val = _mnist1d_arrays()
        task = _classification(name, x_train, y_train, x_val, y_val)
    elif name == "digits":
        x_train, y_train, x_val, y_val = _digits_arrays()
        task = _classification(name, x_train, y_train, x_val, y_val)
    elif name == "teacher":
        task = _teacher(seed)
    elif name == "chars":
        task = _chars()
    else:
        raise InputError(f"unknown task: name={name!r} is not one of {_quoted(TASKS)}")
    return task.to(device)


def mnist1d_cache_path() -> Path:
    """Path of the cached MNIST-1D arrays for the current generation arguments.

    The file name carries a hash of the generation arguments and of the installed
    ``mnist1d`` version, so different arguments never share a file.
    """
    args = _mnist1d_args()
    key = {
        "args": args,
        "mnist1d": metadata.version("mnist1d"),
        "format": _CACHE_FORMAT,
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir() / (f"mnist1d-n{args['num_samples']}-seed{args['seed']}-{digest}.npz")


def _quoted(names: tuple[str, ...]) -> str:
    return ", ".join(repr(n) for n in names)


def _standardise(x_train: torch.Tensor, x_val: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Standardise both splits per feature with the train split's mean and std."""
    x_train = x_train.to(torch.float64)
    x_val = x_val.to(torch.float64)
    mean = x_train.mean(dim=0)
    std = x_train.std(dim=0, correction=0)
    std = torch.where(std > _STD_FLOOR, std, torch.ones_like(std))
    return (
        ((x_train - mean) / std).to(torch.float32),
        ((x_val - mean) / std).to(torch.float32),
    )


def _classification(
    name: str, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray
) -> Task:
    # copies: the arrays may be the read-only ones kept by _mnist1d_arrays
    xt, xv = _standardise(torch.from_numpy(np.array(x_train)), torch.from_numpy(np.array(x_val)))
    return Task(
        name=name,
        x_train=xt,
        y_train=torch.from_numpy(np.array(y_train, dtype=np.int64)),
        x_val=xv,
        y_val=torch.from_numpy(np.array(y_val, dtype=np.int64)),
        kind="classification",
    )


# ---------------------------------------------------------------------------- MNIST-1D


MNIST1D_DEFAULTS = {
    "train_split": 0.8,
    "template_len": 12,
    "padding": [36, 60],
    "scale_coeff": 0.4,
    "max_translation": 48,
    "corr_noise_scale": 0.25,
    "iid_noise_scale": 0.02,
    "shear_scale": 0.75,
    "shuffle_seq": False,
    "final_seq_length": 40,
    "seed": 42,
}
"""The ``mnist1d`` package's default generation arguments (``get_dataset_args`` of
version 0.0.2.post1), written out so that finding the cached arrays does not import the
package (which imports matplotlib and SciPy: about a second of every command's start-up)."""


def _mnist1d_args() -> dict:
    """The generation arguments: the package's defaults with our sample count."""
    return {**MNIST1D_DEFAULTS, "num_samples": MNIST1D_NUM_SAMPLES}


_READ: dict[tuple, tuple[np.ndarray, ...]] = {}
"""The cached arrays last read by this process, read-only, keyed by the cache file's path,
modification time and size: a sweep loads its task once per group, and reading the file
took about 30 of the 35 ms each load cost."""


def _mnist1d_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Raw MNIST-1D arrays ``(x_train, y_train, x_val, y_val)``, from cache if present
    (read-only when they come from the cache file)."""
    path = mnist1d_cache_path()
    keys = ("x_train", "y_train", "x_val", "y_val")
    if path.exists():
        stat = path.stat()
        key = (path, stat.st_mtime_ns, stat.st_size)
        if key in _READ:
            return _READ[key]  # type: ignore[return-value]
        try:
            with np.load(path, allow_pickle=False) as f:
                arrays = tuple(f[k] for k in keys)
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
            pass  # unreadable cache: regenerate and overwrite it
        else:
            for array in arrays:
                array.flags.writeable = False
            _READ.clear()
            _READ[key] = arrays
            return arrays  # type: ignore[return-value]
    arrays = _generate_mnist1d()
    _atomic_savez(path, dict(zip(keys, arrays, strict=True)))
    return arrays


def _generate_mnist1d() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Generate MNIST-1D with ``mnist1d.data.make_dataset`` (which never downloads).

    ``make_dataset`` reseeds the global ``random`` and ``numpy.random`` generators; their
    states are restored afterwards so loading a task has no effect on other code.
    """
    from mnist1d.data import make_dataset
    from mnist1d.utils import ObjectView

    py_state = random.getstate()
    # The legacy global generator is what make_dataset reseeds, so it is what we restore.
    np_state = np.random.get_state()  # noqa: NPY002
    try:
        data = make_dataset(ObjectView(_mnist1d_args()))
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)  # noqa: NPY002
    return (
        np.ascontiguousarray(data["x"], dtype=np.float64),
        np.ascontiguousarray(data["y"], dtype=np.int64),
        np.ascontiguousarray(data["x_test"], dtype=np.float64),
        np.ascontiguousarray(data["y_test"], dtype=np.int64),
    )


def _atomic_savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write an ``.npz`` so that readers never see a partial file. Uncompressed: MNIST-1D's
    floats compress by 6% and decompressing them took 12 of the 14 ms every process paid
    to read them (a cache written compressed still reads)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, lambda handle: np.savez(handle, **arrays))


# ---------------------------------------------------------------------------- digits


def _digits_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = np.asarray(digits.data, dtype=np.float64)
    y = np.asarray(digits.target, dtype=np.int64)
    perm = np.random.default_rng(_DIGITS_SPLIT_SEED).permutation(len(y))
    n_train = int(round(_DIGITS_TRAIN_FRACTION * len(y)))
    train, val = perm[:n_train], perm[n_train:]
    return x[train], y[train], x[val], y[val]


# ---------------------------------------------------------------------------- teacher


def _teacher(seed: int) -> Task:
    gen = torch.Generator().manual_seed(seed)
    n = TEACHER_N_TRAIN + TEACHER_N_VAL
    x = torch.randn(n, TEACHER_D_IN, generator=gen)
    w1 = torch.randn(TEACHER_HIDDEN, TEACHER_D_IN, generator=gen) / TEACHER_D_IN**0.5
    w2 = torch.randn(TEACHER_D_OUT, TEACHER_HIDDEN, generator=gen) / TEACHER_HIDDEN**0.5
    noise = torch.randn(n, TEACHER_D_OUT, generator=gen)
    y = torch.tanh(x @ w1.T) @ w2.T + TEACHER_NOISE_STD * noise
    x_train, x_val = x[:TEACHER_N_TRAIN], x[TEACHER_N_TRAIN:]
    xt, xv = _standardise(x_train, x_val)
    return Task(
        name="teacher",
        x_train=xt,
        y_train=y[:TEACHER_N_TRAIN].contiguous(),
        x_val=xv,
        y_val=y[TEACHER_N_TRAIN:].contiguous(),
        kind="regression",
    )


# ---------------------------------------------------------------------------- chars


def _chars() -> Task:
    from toolkit.engine.text import char_splits

    x_train, y_train, x_val, y_val, _ = char_splits()
    return Task("chars", x_train, y_train, x_val, y_val, kind="language")
