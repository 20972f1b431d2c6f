"""The coordinate check as an explorer that trains what it shows, on demand.

Unlike the explorers of stored studies, this one measures live: each
(parametrization, optimizer, LR) it is asked to show is trained once by
:func:`toolkit.studies.coord_check.coord_check` and kept by the explorer. Building
it trains nothing; the first draw (:meth:`~toolkit.ui.explorer.Explorer.redraw`,
or displaying it in a notebook) trains the starting settings. A member that blows up
is drawn as diverged (crosses, and a message in its panel), never as empty axes.
While a setting trains (seconds), the explorer says so and its controls are disabled.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from types import MappingProxyType

import ipywidgets as widgets
import polars as pl
from matplotlib.figure import Figure

from toolkit.analysis.coord_check import TOLERANCE, seed_mean, verdict, width_ratios
from toolkit.engine.data import Task, load_task
from toolkit.engine.parametrization import Parametrization
from toolkit.engine.train import TrainConfig
from toolkit.errors import InputError
from toolkit.studies.coord_check import DEFAULT_SEEDS, coord_check_seeds
from toolkit.ui import plots
from toolkit.ui.explorer import LABELS, Explorer, dropdown
from toolkit.ui.style import ordered


def _log2_label(value: float) -> str:
    return f"2^{math.log2(value):g}"


class CoordCheckExplorer(Explorer):
    """The coordinate check, computed live: activation size against width, one line
    per layer, one panel per chosen parametrization (SP and muP side by side at first).

    Controls: training step, learning rate, optimizer, which parametrizations, and
    the statistic (``l1``: mean |activation|, or ``rms``). Each (parametrization,
    optimizer, LR) is trained once for ``config.steps`` steps at every width (seeds
    ``0..seeds-1``) and kept in :attr:`results` under that key; the step slider only
    redraws. :meth:`verdict` judges a trained setting's width scaling.

    ``config`` defaults to what ``python -m toolkit coord-check`` uses (MLP with 3
    hidden layers on MNIST-1D, base width the smallest width, 3 steps, batch 128), so
    ``coord-check --json`` with the same flags prints the numbers drawn here. Its
    parametrization name and optimizer are replaced by the controls' values.
    """

    def __init__(
        self,
        config: TrainConfig | None = None,
        *,
        widths: Sequence[int] = (64, 128, 256, 512),
        lrs: Sequence[float] = tuple(2.0**k for k in range(-10, 0)),
        optimizers: Sequence[str] = ("adam", "sgd"),
        parametrizations: Sequence[str] = ("sp", "mup", "ntk", "mf"),
        seeds: int = len(DEFAULT_SEEDS),
        task: Task | None = None,
        name: str = "coord_check",
    ) -> None:
        self.widths = sorted(int(w) for w in widths)
        if config is None:
            base = Parametrization("mup", base_width=self.widths[0], base_depth=3)
            config = TrainConfig(parametrization=base, width=self.widths[0], depth=3, steps=3)
        self.config = config
        self.task = task or load_task(config.task)
        self.seeds = seeds
        names = pl.DataFrame({"parametrization": list(parametrizations)})
        self.parametrizations = ordered(names, "parametrization")
        self._results: dict[tuple[str, str, float], pl.DataFrame] = {}
        self._per_seed: dict[tuple[str, str, float], pl.DataFrame] = {}
        lrs = sorted(float(lr) for lr in lrs)
        default_lr = min(lrs, key=lambda lr: abs(math.log2(lr) - math.log2(0.01)))
        side_by_side = tuple(p for p in ("sp", "mup") if p in parametrizations)
        controls = {
            "step": widgets.SelectionSlider(options=list(range(config.steps + 1)),
                                            value=config.steps, description="step",
                                            continuous_update=False),
            "lr": widgets.SelectionSlider(options=[(_log2_label(lr), lr) for lr in lrs],
                                          value=default_lr, description="LR",
                                          continuous_update=False),
            "optimizer": dropdown(list(optimizers), description="optimizer"),
            "parametrizations": widgets.SelectMultiple(
                options=self.parametrizations,
                value=side_by_side or tuple(self.parametrizations[:1]),
                description="parametrizations", rows=min(len(self.parametrizations), 4),
            ),
            "stat": widgets.ToggleButtons(options=["l1", "rms"], description="stat", style=LABELS),
        }  # fmt: skip
        super().__init__(controls, self._render, name=name, in_place=True)

    @property
    def results(self) -> Mapping[tuple[str, str, float], pl.DataFrame]:
        """What has been trained so far: (parametrization, optimizer, LR) -> the
        :func:`~toolkit.studies.coord_check.coord_check` frame, averaged over seeds
        (read-only)."""
        return MappingProxyType(self._results)

    def measure(self, parametrization: str, optimizer: str, lr: float) -> pl.DataFrame:
        """The coordinate check of one setting (trained on first request), with a
        ``parametrization`` column."""
        key = (parametrization, optimizer, lr)
        if key not in self._results:
            run_config = replace(
                self.config,
                parametrization=self.config.parametrization.with_(name=parametrization),
                optimizer=optimizer,
            )
            what = (f"training {parametrization}, {optimizer}, LR {_log2_label(lr)} at widths "
                    f"{', '.join(map(str, self.widths))}...")  # fmt: skip
            with self.busy(what):
                found = coord_check_seeds(run_config, self.widths, lr=lr,
                                          seeds=range(self.seeds), task=self.task)  # fmt: skip
            self._per_seed[key] = found
            self._results[key] = seed_mean(found).with_columns(
                parametrization=pl.lit(parametrization)
            )
        return self._results[key]

    def verdict(
        self, parametrization: str, optimizer: str, lr: float, *, tolerance: float = TOLERANCE
    ) -> pl.DataFrame:
        """Is each layer width-stable at each step? The
        :func:`~toolkit.analysis.coord_check.verdict` of one setting (trained on first
        request; needs three widths or more)."""
        self.measure(parametrization, optimizer, lr)
        return verdict(self._per_seed[parametrization, optimizer, lr], tolerance=tolerance)

    def width_ratios(
        self, parametrizations: Sequence[str], optimizer: str, lr: float, *, stat: str = "l1"
    ) -> pl.DataFrame:
        """Each layer's ``stat`` at each width over its value at the smallest width
        (:func:`~toolkit.analysis.coord_check.width_ratios`), per parametrization:
        ``parametrization, layer, role, step, width, ratio``."""
        return pl.concat(
            width_ratios(self.measure(name, optimizer, lr), stat=stat).select(
                pl.lit(name).alias("parametrization"), pl.all()
            )
            for name in parametrizations
        )

    def _render(self, fig: Figure, values: dict) -> None:
        chosen = list(values["parametrizations"])
        if not chosen:
            raise InputError("parametrizations=() is empty: pick at least one")
        rows = pl.concat(self.measure(p, values["optimizer"], values["lr"]) for p in chosen)
        title = (f"{values['optimizer']}, LR {_log2_label(values['lr'])}, "
                 f"step {values['step']}")  # fmt: skip
        plots.coord_check_plot(rows.filter(pl.col("step") == values["step"]),
                               stat=values["stat"], col="parametrization", title=title,
                               fig=fig)  # fmt: skip
