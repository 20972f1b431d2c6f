"""toolkit: tiny batched proxy models for studying hyperparameter transfer.

The data flow runs one way through four subpackages (see ``ARCHITECTURE.md``):
``engine`` trains, ``studies`` turns specs into stored results, the results
``store`` holds them, ``analysis`` reads them (polars in, polars out) and ``ui``
draws, explores and exports them.

The public API is re-exported here lazily, so that ``import toolkit.store`` (or
any analysis module) does not import torch.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_PUBLIC = {
    "Parametrization": "toolkit.engine.parametrization",
    "describe": "toolkit.engine.parametrization",
    "TrainConfig": "toolkit.engine.train",
    "Member": "toolkit.engine.train",
    "train": "toolkit.engine.train",
    "load_task": "toolkit.engine.data",
    "SweepSpec": "toolkit.studies.sweep",
    "InputError": "toolkit.errors",
}
_RENAMED = {"open_store": ("toolkit.store", "open")}

__all__ = ["__version__", *_PUBLIC, *_RENAMED]


def __getattr__(name: str) -> object:
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    if name in _RENAMED:
        module, attribute = _RENAMED[name]
        return getattr(importlib.import_module(module), attribute)
    raise AttributeError(f"module 'toolkit' has no attribute {name!r}")
