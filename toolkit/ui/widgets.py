"""Interactive explorers for the notebooks: controls in, a redrawn figure out.

An :class:`Explorer` wires ipywidgets controls to a ``render(fig, values)``
function (which queries a frame and calls a :mod:`toolkit.ui.plots` function with
``fig=``). The figure is one matplotlib ``Figure`` reused at every redraw and
shown as a PNG image widget, so a redraw replaces the picture in place.
Sliders are created with ``continuous_update=False``: they redraw when
released, not at every pixel of a drag. Errors go to an output area under the
figure (the last good picture stays). An export row writes the current figure
with :func:`toolkit.ui.style.export`. :class:`RunMore` adds a button that trains
more points into the store with a progress bar and redraws.

No analysis or training logic lives here: widgets only wire controls to the
store, :mod:`toolkit.analysis.transfer` and :mod:`toolkit.ui.plots`.
"""

from __future__ import annotations

import io
import math
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from functools import cached_property
from pathlib import Path

import ipywidgets as widgets
import polars as pl
from matplotlib.figure import Figure

from toolkit import store as results
from toolkit.analysis import intrinsic as intrinsic_analysis
from toolkit.analysis import spectra as spectral_analysis
from toolkit.analysis.transfer import drift, losses_at_steps, lr_curves, optimal_lr, transfer_regret
from toolkit.engine.data import Task, load_task
from toolkit.engine.parametrization import Parametrization
from toolkit.engine.train import TrainConfig
from toolkit.errors import InputError
from toolkit.studies.coord_check import coord_check
from toolkit.ui import plots
from toolkit.ui.style import FORMATS, VENUES, export


class StudyData:
    """A results store read once and kept in memory; :meth:`reload` after new runs.

    ``runs`` and ``curves`` are the store's tables as polars frames.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.store = results.open(self.path)

    @cached_property
    def runs(self) -> pl.DataFrame:
        return self.store.runs().collect()

    @cached_property
    def curves(self) -> pl.DataFrame:
        return self.store.curves().filter(pl.col("split") != "batch").collect()

    @cached_property
    def losses(self) -> pl.DataFrame:
        """Every run's train and val loss at every evaluation step (``split`` column)."""
        return pl.concat(
            losses_at_steps(self.runs, self.curves, split=split).with_columns(split=pl.lit(split))
            for split in ("train", "val")
        )

    def reload(self) -> None:
        for name in ("runs", "curves", "losses"):
            self.__dict__.pop(name, None)

    def values(self, column: str) -> list:
        """Sorted distinct values of a runs column (for a control's options)."""
        return self.runs[column].unique().sort().to_list()


def dropdown(options: list, value=None, description: str = "") -> widgets.Dropdown:
    return widgets.Dropdown(
        options=options, value=options[0] if value is None else value, description=description
    )


def choose_many(options: list, description: str = "") -> widgets.SelectMultiple:
    """Pick several values (e.g. which widths to show); all selected at first."""
    return widgets.SelectMultiple(
        options=options, value=tuple(options), description=description, rows=min(len(options), 6)
    )


def step_slider(steps: list[int], description: str = "step") -> widgets.SelectionSlider:
    """A slider over the recorded training steps that redraws on release only."""
    return widgets.SelectionSlider(
        options=steps, value=steps[-1], description=description, continuous_update=False
    )


class Explorer:
    """Controls bound to a render function, one reused figure, errors and export.

    Args:
        controls: named widgets; their current values are passed to ``render``.
        render: ``render(fig, values)`` draws into ``fig`` (already cleared).
        name: file stem for exported figures.
        export_dir: where exports go (default ``figures/``).
    """

    def __init__(
        self,
        controls: Mapping[str, widgets.ValueWidget],
        render: Callable[[Figure, dict], object],
        *,
        name: str = "figure",
        export_dir: str | Path = "figures",
        dpi: int = 90,
    ) -> None:
        self.controls = dict(controls)
        self.render = render
        self.name = name
        self.export_dir = Path(export_dir)
        self.dpi = dpi
        self.figure = Figure()  # fixed margins (see plots._subplots): no layout pass per draw
        self._pictures: dict[tuple, bytes] = {}
        self.image = widgets.Image(format="png")
        self.errors = widgets.Output()
        self.status = widgets.HTML()
        self.draw_seconds: float | None = None
        for control in self.controls.values():
            control.observe(self._on_change, names="value")
        self.venue = widgets.Dropdown(options=sorted(VENUES), value="neurips", description="venue")
        self.column = widgets.Dropdown(options=["column", "full"], description="width")
        self.format = widgets.Dropdown(options=list(FORMATS), description="format")
        self.export_button = widgets.Button(description="Export", icon="download")
        self.export_button.on_click(lambda _: self.export())
        self.extra_rows: list[widgets.Widget] = []
        self.redraw()

    def values(self) -> dict:
        return {name: control.value for name, control in self.controls.items()}

    def _on_change(self, _change) -> None:
        self.redraw()

    def redraw(self) -> None:
        """Render into the figure and show it; an error is shown, the old picture stays.

        Pictures are kept per combination of control values, so going back to a
        setting already seen is instant; :meth:`forget` drops them when the data
        change.
        """
        started = time.perf_counter()
        values = self.values()
        key = tuple(sorted((name, repr(value)) for name, value in values.items()))
        try:
            if key not in self._pictures:
                self.figure.clear()
                self.render(self.figure, values)
                buffer = io.BytesIO()
                self.figure.savefig(buffer, format="png", dpi=self.dpi)
                self._pictures[key] = buffer.getvalue()
        except Exception:  # shown to the user under the figure, never raised into the UI
            self.errors.outputs = ()
            self.errors.append_stdout(traceback.format_exc(limit=3))
            return
        self.errors.outputs = ()
        self.image.value = self._pictures[key]
        self.draw_seconds = time.perf_counter() - started

    def forget(self) -> None:
        """Drop the kept pictures (after new runs arrived) and redraw."""
        self._pictures.clear()
        self.redraw()

    def export(self) -> list[Path]:
        """Write the current figure for the chosen venue, width and format."""
        self.export_dir.mkdir(parents=True, exist_ok=True)
        path = self.export_dir / f"{self.name}.{self.format.value}"
        written = export(self.figure, path, venue=self.venue.value, width=self.column.value)
        self.status.value = "exported " + ", ".join(str(p) for p in written)
        return written

    @property
    def widget(self) -> widgets.Widget:
        controls = widgets.HBox(
            list(self.controls.values()), layout=widgets.Layout(flex_flow="row wrap")
        )
        exports = widgets.HBox([self.venue, self.column, self.format, self.export_button])
        return widgets.VBox(
            [controls, *self.extra_rows, self.image, self.errors, exports, self.status]
        )

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


class RunMore:
    """A button that extends a study to a new size: trains it into the store with a progress
    bar, then redraws.

    ``specs`` are the study's sweeps (e.g. ``SweepSpec.from_toml(study_spec(name))``);
    ``axis`` is the grid field to extend (``widths``, ``depths`` or ``steps``) and
    ``options`` the values offered in a dropdown. Runs already in the store are
    skipped, so a second click with the same choice trains nothing. The sweep's
    progress bar (tqdm, a widget in a notebook) shows in this row's output area.
    """

    def __init__(
        self,
        explorer: Explorer,
        data: StudyData,
        specs: list,
        *,
        axis: str,
        options: list,
    ) -> None:
        self.explorer, self.data, self.specs, self.axis = explorer, data, specs, axis
        self.choice = dropdown(list(options), description=axis.removesuffix("s"))
        self.button = widgets.Button(description="Train more points", icon="play")
        self.output = widgets.Output()
        self.button.on_click(lambda _: self.run())
        row = widgets.HBox([self.choice, self.button])
        explorer.extra_rows.append(widgets.VBox([row, self.output]))

    def run(self) -> int:
        """Train the study at the chosen size; returns how many runs were trained."""
        from toolkit.studies.sweep import run_local

        specs = [spec.with_(**{self.axis: (self.choice.value,)}) for spec in self.specs]
        self.button.disabled = True
        self.output.clear_output()
        try:
            with self.output:
                work = run_local(specs, self.data.path)
        finally:
            self.button.disabled = False
        self.data.reload()
        self.explorer.forget()
        return work.runs


SEED_MEAN = "mean over seeds"


def _selected_losses(data: StudyData, values: dict, hue: str) -> pl.DataFrame:
    """The loss rows the shared transfer controls select (split, step, hue values, seeds)."""
    frame = data.losses.filter(
        pl.col("split") == values["split"],
        pl.col("step") == values["step"],
        pl.col(hue).is_in(list(values[hue])),
    )
    for name, value in values.items():
        if name not in ("split", "step", "seeds", "view", hue) and name in frame.columns:
            frame = frame.filter(pl.col(name) == value)
    if values["seeds"] != SEED_MEAN:
        frame = frame.filter(pl.col("seed") == int(values["seeds"].removeprefix("seed ")))
    return frame


def transfer_controls(data: StudyData, *, hue: str, fixed: tuple[str, ...] = ()) -> dict:
    """The shared controls of a transfer view: loss split, training step, which ``hue``
    values to show, seed aggregation, and a dropdown for each column in ``fixed``."""
    controls = {name: dropdown(data.values(name), description=name) for name in fixed}
    controls["split"] = widgets.ToggleButtons(options=["train", "val"], description="loss")
    controls["step"] = step_slider(data.losses["step"].unique().sort().to_list())
    controls[hue] = choose_many(data.values(hue), description=hue)
    seeds = [SEED_MEAN] + [f"seed {s}" for s in data.values("seed")]
    controls["seeds"] = dropdown(seeds, description="seeds")
    return controls


def transfer_explorer(
    data: StudyData,
    *,
    hue: str = "width",
    col: str = "parametrization",
    fixed: tuple[str, ...] = ("optimizer",),
    name: str = "transfer",
) -> Explorer:
    """Transfer curves, optima with drift, or regret, for one study store.

    ``hue`` is the size axis (``width``, ``depth`` or ``steps``); ``col`` splits
    panels (e.g. SP vs muP); ``fixed`` columns get a dropdown each (e.g. the
    optimizer). The view toggle switches between loss-vs-LR curves, the optimal
    LR against size with its fitted drift, and the transfer regret.
    """
    controls = transfer_controls(data, hue=hue, fixed=fixed)
    controls["view"] = widgets.ToggleButtons(
        options=["curves", "optimum", "regret"], description="view"
    )

    def render(fig: Figure, values: dict) -> None:
        frame = _selected_losses(data, values, hue)
        title = f"{values['split']} loss at step {values['step']}"
        if values["view"] == "curves":
            optima = optimal_lr(frame, loss="loss")
            plots.transfer_curves(
                lr_curves(frame, loss="loss"), hue=hue, col=col, optima=optima,
                ylabel=f"{values['split']} loss", title=title, fig=fig,
            )  # fmt: skip
        elif values["view"] == "optimum":
            optima = optimal_lr(frame, loss="loss")
            plots.optimum_vs_size(
                optima, x=hue, hue=col, drift=drift(optima, axis=hue), title=title, fig=fig
            )
        else:
            regret = transfer_regret(frame, axis=hue, loss="loss")
            plots.regret_vs_size(regret, x=hue, hue=col, title=title, fig=fig)

    return Explorer(controls, render, name=name)


def heatmap_explorer(
    data: StudyData,
    *,
    row: str = "weight_decay_scaling",
    x: str = "log2_lr",
    y: str = "weight_decay",
    col: str = "width",
    name: str = "heatmap",
) -> Explorer:
    """Loss over an (LR, weight decay) grid per width, for the rule chosen in ``row``."""
    controls = transfer_controls(data, hue=col, fixed=(row,))

    def render(fig: Figure, values: dict) -> None:
        frame = _selected_losses(data, values, col)
        title = f"{row} = {values[row]}: {values['split']} loss at step {values['step']}"
        curves = lr_curves(frame, loss="loss")
        plots.loss_heatmaps(curves, x=x, y=y, col=col, title=title, fig=fig)

    return Explorer(controls, render, name=name)


def _log2_label(value: float) -> str:
    return f"2^{math.log2(value):g}"


def coord_check_explorer(
    config: TrainConfig | None = None,
    *,
    widths: Sequence[int] = (64, 128, 256, 512),
    lrs: Sequence[float] = tuple(2.0**k for k in range(-10, 0)),
    optimizers: Sequence[str] = ("adam", "sgd"),
    parametrizations: Sequence[str] = ("sp", "mup", "ntk", "mf"),
    seeds: int = 2,
    task: Task | None = None,
    name: str = "coord_check",
) -> Explorer:
    """The coordinate check, computed live: activation size against width, one line
    per layer, one panel per chosen parametrization (SP and muP side by side at first).

    Controls: training step, learning rate, optimizer, which parametrizations, and
    the statistic (``l1``: mean |activation|, or ``rms``). Each (parametrization,
    optimizer, LR) is trained once by :func:`toolkit.studies.coord_check.coord_check` for
    ``config.steps`` steps at every width (seeds ``0..seeds-1``) and kept in the
    explorer's ``results`` dict under that key; the step slider only redraws.

    ``config`` defaults to what ``python -m toolkit coord-check`` uses (MLP with 3
    hidden layers on MNIST-1D, base width the smallest width, 3 steps, batch 128), so
    ``coord-check --json`` with the same flags prints the numbers drawn here. Its
    parametrization name and optimizer are replaced by the controls' values.
    """
    widths = sorted(int(w) for w in widths)
    if config is None:
        base = Parametrization("mup", base_width=widths[0], base_depth=3)
        config = TrainConfig(parametrization=base, width=widths[0], depth=3, steps=3)
    task = task or load_task(config.task)
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
            options=list(parametrizations), value=side_by_side or tuple(parametrizations[:1]),
            description="param.",
            rows=min(len(parametrizations), 4),
        ),
        "stat": widgets.ToggleButtons(options=["l1", "rms"], description="stat"),
    }  # fmt: skip
    results: dict[tuple[str, str, float], pl.DataFrame] = {}

    def frame(parametrization: str, optimizer: str, lr: float) -> pl.DataFrame:
        key = (parametrization, optimizer, lr)
        if key not in results:
            run_config = replace(
                config,
                parametrization=config.parametrization.with_(name=parametrization),
                optimizer=optimizer,
            )
            found = coord_check(run_config, widths, lr=lr, seeds=range(seeds), task=task)
            results[key] = found.with_columns(parametrization=pl.lit(parametrization))
        return results[key]

    def render(fig: Figure, values: dict) -> None:
        chosen = list(values["parametrizations"])
        if not chosen:
            raise InputError("parametrizations=() is empty: pick at least one")
        rows = pl.concat(frame(p, values["optimizer"], values["lr"]) for p in chosen)
        # Panels follow the options' order (SP before muP), not the alphabet.
        order = pl.Enum(list(parametrizations))
        rows = rows.with_columns(pl.col("parametrization").cast(order))
        title = (f"{values['optimizer']}, LR {_log2_label(values['lr'])}, "
                 f"step {values['step']}")  # fmt: skip
        plots.coord_check_plot(rows.filter(pl.col("step") == values["step"]),
                               stat=values["stat"], col="parametrization", title=title,
                               fig=fig)  # fmt: skip

    explorer = Explorer(controls, render, name=name)
    explorer.results = results
    return explorer


SPECTRA_VIEWS = ("spectra across widths", "spectra across steps", "scaling with width",
                 "condition heatmap")  # fmt: skip
"""The views of :func:`spectra_explorer`."""


def spectra_explorer(
    data: StudyData, *, study: str | None = "spectra", name: str = "spectra"
) -> Explorer:
    """Layer spectra of a store recorded with :func:`toolkit.engine.probes.spectral_stats`.

    Views: the empirical spectral density of one layer across widths (at a step)
    or across training steps (at a width), one panel per parametrization; a
    statistic against width with its fitted exponent; and a statistic relative
    to the smallest width as a layers x widths heatmap (the spectral condition
    holds where ``cond_ratio`` stays white). Controls: view, training step,
    layer, width, parametrizations and the statistic. ``study`` keeps that
    study's runs (``None``: all).
    """
    runs = data.runs if study is None else data.runs.filter(pl.col("study") == study)
    probes = spectral_analysis.with_settings(data.store.probes().collect(), runs)
    if probes.height == 0:
        raise InputError(f"study={study!r} has no spectral probes in {data.path}")
    means = spectral_analysis.seed_mean(probes)
    spectra = spectral_analysis.mean_spectrum(spectral_analysis.singular_value_frame(probes))
    stats = [s for s in spectral_analysis.SUMMARY_STATS if s in set(means["stat"].to_list())]
    params = probes["parametrization"].unique().sort().to_list()
    layers = spectral_analysis.layer_order(probes)
    roles = dict(probes.select("layer", "role").unique().iter_rows())
    hidden = [layer for layer in layers if roles[layer] == "hidden"]
    controls = {
        "view": widgets.ToggleButtons(options=list(SPECTRA_VIEWS), description="view"),
        "step": step_slider(probes["step"].unique().sort().to_list()),
        "layer": dropdown(layers, value=hidden[0] if hidden else None, description="layer"),
        "width": widgets.SelectionSlider(options=probes["width"].unique().sort().to_list(),
                                         description="width", continuous_update=False),
        "parametrizations": choose_many(params, description="param."),
        "stat": dropdown(stats, value="cond_ratio", description="stat"),
    }  # fmt: skip

    def render(fig: Figure, values: dict) -> None:
        chosen = pl.col("parametrization").is_in(list(values["parametrizations"]))
        layer, step, view = values["layer"], values["step"], values["view"]
        if view == "spectra across widths":
            rows = spectra.filter(chosen, pl.col("layer") == layer, pl.col("step") == step)
            plots.esd_plot(spectral_analysis.esd_density(rows), hue="width",
                           title=f"{layer}, step {step}", fig=fig)  # fmt: skip
        elif view == "spectra across steps":
            width = values["width"]
            rows = spectra.filter(chosen, pl.col("layer") == layer, pl.col("width") == width)
            plots.esd_plot(spectral_analysis.esd_density(rows), hue="step",
                           title=f"{layer}, width {width}", fig=fig)  # fmt: skip
        elif view == "scaling with width":
            where = [chosen, pl.col("layer") == layer, pl.col("step") == step]
            fits = spectral_analysis.fit_exponent(probes.filter(*where), stat=values["stat"])
            points = means.filter(*where, pl.col("stat") == values["stat"])
            plots.exponent_plot(points, fits, ylabel=values["stat"],
                                title=f"{layer}, step {step}", fig=fig)  # fmt: skip
        else:
            table = spectral_analysis.width_table(probes.filter(chosen), stat=values["stat"],
                                                  step=step)  # fmt: skip
            plots.ratio_heatmaps(table, title=f"{values['stat']} at step {step}", fig=fig)

    return Explorer(controls, render, name=name)


INTRINSIC_VIEWS = ("performance vs d", "d_int vs D")


def intrinsic_explorer(frame: pl.DataFrame, *, name: str = "intrinsic_dimension") -> Explorer:
    """Intrinsic-dimension measurements (:func:`toolkit.analysis.intrinsic.load_measurements`).

    Views: performance (as a fraction of full training) against the subspace
    dimension ``d`` with the threshold line and each curve's ``d_int`` marked,
    one panel per parametrization; and ``d_int`` against the parameter count
    ``D`` with its bootstrap interval and the fitted exponent. ``across``
    chooses what varies: the widths at the chosen depth, or the depths at the
    chosen width. Controls: view, across, task, projection, width, depth, a
    ``d`` to mark, the threshold (``d_int`` is re-estimated from the stored
    per-seed results; a sweep refined near one threshold resolves others only to
    its coarser grid) and the parametrizations.
    """
    curves = intrinsic_analysis.performance_curves(frame)
    tables: dict[float, pl.DataFrame] = {}

    def table(threshold: float) -> pl.DataFrame:
        if threshold not in tables:
            tables[threshold] = intrinsic_analysis.d_int_table(frame, threshold=threshold)
        return tables[threshold]

    def slider(column: str) -> widgets.SelectionSlider:
        return widgets.SelectionSlider(options=frame[column].drop_nulls().unique().sort().to_list(),
                                       description=column, continuous_update=False)  # fmt: skip

    params = frame["parametrization"].unique().sort().to_list()
    controls = {
        "view": widgets.ToggleButtons(options=list(INTRINSIC_VIEWS), description="view"),
        "across": widgets.ToggleButtons(options=["width", "depth"], description="across"),
        "task": dropdown(frame["task"].unique().sort().to_list(), description="task"),
        "projection": dropdown(frame["projection"].unique().sort().to_list(), value="fastfood"
                               if "fastfood" in set(frame["projection"]) else None,
                               description="projection"),  # fmt: skip
        "width": slider("width"),
        "depth": slider("depth"),
        "d": slider("d"),
        "threshold": widgets.FloatSlider(value=0.9, min=0.5, max=1.0, step=0.05,
                                         description="threshold", continuous_update=False),
        "parametrizations": choose_many(params, description="param."),
    }  # fmt: skip

    def render(fig: Figure, values: dict) -> None:
        across, fixed = values["across"], "depth" if values["across"] == "width" else "width"
        where = [
            pl.col("task") == values["task"],
            pl.col("projection") == values["projection"],
            pl.col(fixed) == values[fixed],
            pl.col("parametrization").is_in(list(values["parametrizations"])),
        ]
        rows = table(values["threshold"]).filter(*where)
        if rows.height == 0:
            raise InputError(f"nothing measured for {values['task']}, {values['projection']}, "
                             f"{fixed} {values[fixed]} and these parametrizations")  # fmt: skip
        title = f"{values['task']}, {values['projection']}, {fixed} {values[fixed]}"
        if values["view"] == "performance vs d":
            plots.intrinsic_curves(curves.filter(*where), threshold=values["threshold"], hue=across,
                                   d_int=rows, mark_d=values["d"], title=title,
                                   fig=fig)  # fmt: skip
            return
        points, fits = intrinsic_analysis.d_int_vs_D(rows, series=("parametrization",))
        plots.exponent_plot(points, fits, x="D", hue="series",
                            ylabel=intrinsic_analysis.threshold_key(values["threshold"]),
                            title=f"{title}, across {across}", fig=fig)  # fmt: skip

    return Explorer(controls, render, name=name)
