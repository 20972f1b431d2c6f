"""Explorers of stored studies: controls wired to :mod:`toolkit.analysis` and
:mod:`toolkit.ui.plots` over a study's results (transfer curves, weight-decay
heatmaps, spectra, intrinsic dimension, the claims card).

Each function builds an :class:`~toolkit.ui.explorer.Explorer` from what it is
given and draws it at once from the stored data (nothing trains). A selection
with no runs, or whose runs all diverged, is said so in the figure area. No analysis or
training logic lives here: widgets only wire controls to the store,
:mod:`toolkit.analysis` and :mod:`toolkit.ui.plots`.
"""

from __future__ import annotations

import ipywidgets as widgets
import polars as pl
from matplotlib.figure import Figure

from toolkit.analysis import intrinsic as intrinsic_analysis
from toolkit.analysis import spectra as spectral_analysis
from toolkit.analysis.claims import VERDICTS
from toolkit.analysis.optima import (
    hyperparameter_curves,
    lr_curves,
    optimal_hyperparameter,
    swept,
)
from toolkit.analysis.transfer import drift, transfer_regret
from toolkit.errors import InputError, check_choice
from toolkit.ui import plots
from toolkit.ui.explorer import (
    LABELS,
    Explorer,
    RunMore,
    StudyData,
    choose_many,
    dropdown,
    step_slider,
)
from toolkit.ui.style import ordered

SEED_MEAN = "mean over seeds"


def _selected_losses(data: StudyData, values: dict, hue: str) -> pl.DataFrame:
    """The loss rows the shared transfer controls select (split, step, hue values, seeds).

    Raises :class:`InputError` naming the selection when it has no runs, or when all of
    them diverged (e.g. "no runs for optimizer=sgd, width 48: all diverged")."""
    frame = data.losses.filter(
        pl.col("split") == values["split"],
        pl.col("step") == values["step"],
        pl.col(hue).is_in(list(values[hue])),
    )
    chosen = values[hue] and ", ".join(str(v) for v in values[hue])
    where = [f"{hue} {chosen}" if chosen else f"no {hue} chosen"]
    for name, value in values.items():
        if name not in ("split", "step", "seeds", "view", hue) and name in frame.columns:
            frame = frame.filter(pl.col(name) == value)
            where.insert(-1, f"{name}={value}")
    if values["seeds"] != SEED_MEAN:
        frame = frame.filter(pl.col("seed") == int(values["seeds"].removeprefix("seed ")))
        where.append(values["seeds"])
    if frame.height == 0:
        raise InputError(f"no runs for {', '.join(where)}")
    if (frame["status"] != "ok").all():
        raise InputError(f"no runs for {', '.join(where)}: all diverged")
    return frame


def transfer_controls(data: StudyData, *, hue: str, fixed: tuple[str, ...] = ()) -> dict:
    """The shared controls of a transfer view: loss split, training step, which ``hue``
    values to show, seed aggregation, and a dropdown for each column in ``fixed``."""
    controls = {name: dropdown(data.values(name), description=name.replace("_", " "))
                for name in fixed}  # fmt: skip
    controls["split"] = widgets.ToggleButtons(options=["train", "val"], description="loss",
                                              style=LABELS)  # fmt: skip
    controls["step"] = step_slider(data.losses["step"].unique().sort().to_list())
    controls[hue] = choose_many(data.values(hue), description=f"{hue}s shown")
    seeds = [SEED_MEAN] + [f"seed {s}" for s in data.values("seed")]
    controls["seeds"] = dropdown(seeds, description="seeds")
    return controls


def refresh_transfer_controls(controls: dict, data: StudyData, *, hue: str) -> None:
    """Offer every ``hue`` value and training step ``data`` holds now (after new runs):
    all values shown, the step slider at the last step."""
    steps = data.losses["step"].unique().sort().to_list()
    controls["step"].options, controls["step"].value = steps, steps[-1]
    values = data.values(hue)
    controls[hue].options, controls[hue].value = values, tuple(values)


def transfer_explorer(
    data: StudyData,
    *,
    hue: str = "width",
    col: str = "parametrization",
    fixed: tuple[str, ...] = ("optimizer",),
    name: str = "transfer",
    run_more: RunMore | None = None,
    hyperparameters: tuple[str, ...] = ("lr",),
) -> Explorer:
    """Transfer curves, optima with drift, or regret, for one study store.

    ``hue`` is the size axis (``width``, ``depth`` or ``steps``); ``col`` splits
    panels (e.g. SP vs muP); ``fixed`` columns get a dropdown each (e.g. the
    optimizer). The view toggle switches between loss-vs-hyperparameter curves, the
    optimal value against size with its fitted drift, and the transfer regret.
    ``hyperparameters`` are the swept axes to choose from (default the LR; e.g.
    ``("output_alpha", "init_sigma")``): each is shown where it is swept
    (:func:`~toolkit.analysis.optima.swept`), the others held. ``run_more`` (over the
    same ``data``) adds a row that trains more sizes.
    """
    controls = transfer_controls(data, hue=hue, fixed=fixed)
    if len(hyperparameters) > 1:
        controls["hyperparameter"] = widgets.ToggleButtons(
            options=list(hyperparameters), description="swept", style=LABELS
        )
    controls["view"] = widgets.ToggleButtons(
        options=["curves", "optimum", "regret"], description="view", style=LABELS
    )

    def render(fig: Figure, values: dict) -> None:
        x = values.get("hyperparameter", hyperparameters[0])
        frame = _selected_losses(data, values, hue)
        frame = swept(frame, x)
        if frame.height == 0:
            raise InputError(f"{x} is not swept in this selection")
        title = f"{values['split']} loss at step {values['step']}"
        if values["view"] == "curves":
            optima = optimal_hyperparameter(frame, x, loss="loss")
            plots.transfer_curves(
                hyperparameter_curves(frame, x, loss="loss"), x=f"log2_{x}", hue=hue, col=col,
                optima=optima, ylabel=f"{values['split']} loss", title=title, fig=fig,
            )  # fmt: skip
        elif values["view"] == "optimum":
            optima = optimal_hyperparameter(frame, x, loss="loss")
            plots.optimum_vs_size(optima, x=hue, hue=col, drift=drift(optima, axis=hue),
                                  y=f"log2_{x}", title=title, fig=fig)  # fmt: skip
        else:
            regret = transfer_regret(frame, axis=hue, loss="loss", x=x)
            plots.regret_vs_size(regret, x=hue, hue=col, title=title, fig=fig)

    if run_more is not None:  # before the explorer's own redraw after new runs
        run_more.on_trained(lambda: refresh_transfer_controls(controls, data, hue=hue))
    explorer = Explorer(controls, render, name=name, run_more=run_more, in_place=True)
    explorer.redraw()
    return explorer


def heatmap_explorer(
    data: StudyData,
    *,
    row: str = "weight_decay_scaling",
    x: str = "log2_lr",
    y: str = "weight_decay",
    col: str = "width",
    name: str = "heatmap",
    split: str = "train",
) -> Explorer:
    """Loss over an (LR, weight decay) grid per width, for the rule chosen in ``row``;
    a dropdown for each other setting that varies in the study (e.g. the
    parametrization), so every heatmap cell is one configuration. ``split`` is the loss
    shown first (``train`` or ``val``; a toggle changes it)."""
    check_choice("split", split, ("train", "val"))
    varying = [
        key for key in ("parametrization", "optimizer", "depth", "steps", "batch_size")
        if key in data.runs.columns and key not in (row, col) and data.runs[key].n_unique() > 1
    ]  # fmt: skip
    controls = transfer_controls(data, hue=col, fixed=(row, *varying))
    controls["split"].value = split

    def render(fig: Figure, values: dict) -> None:
        frame = _selected_losses(data, values, col)
        title = f"{row} = {values[row]}: {values['split']} loss at step {values['step']}"
        curves = lr_curves(frame, loss="loss")
        plots.loss_heatmaps(curves, x=x, y=y, col=col, title=title, fig=fig)

    explorer = Explorer(controls, render, name=name, in_place=True)
    explorer.redraw()
    return explorer


SPECTRA_VIEWS = ("spectra across widths", "spectra across steps", "scaling with width",
                 "condition heatmap")  # fmt: skip
"""The views of :func:`spectra_explorer`."""

_SPECTRA_UNUSED = {
    "spectra across widths": ("width", "stat"),
    "spectra across steps": ("step", "stat"),
    "scaling with width": ("width",),
    "condition heatmap": ("layer", "width"),
}


def _spectra_unused(values: dict) -> tuple[str, ...]:
    """The :func:`spectra_explorer` controls its current view does not use."""
    return _SPECTRA_UNUSED[values["view"]]


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
    params = ordered(probes, "parametrization")
    layers = spectral_analysis.layer_order(probes)
    roles = dict(probes.select("layer", "role").unique().iter_rows())
    hidden = [layer for layer in layers if roles[layer] == "hidden"]
    controls = {
        "view": widgets.ToggleButtons(options=list(SPECTRA_VIEWS), description="view",
                                      style=LABELS),
        "step": step_slider(probes["step"].unique().sort().to_list()),
        "layer": dropdown(layers, value=hidden[0] if hidden else None, description="layer"),
        "width": widgets.SelectionSlider(options=probes["width"].unique().sort().to_list(),
                                         description="width", continuous_update=False),
        "parametrizations": choose_many(params, description="parametrizations"),
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

    explorer = Explorer(controls, render, name=name, inactive=_spectra_unused, in_place=True)
    explorer.redraw()
    return explorer


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

    params = ordered(frame, "parametrization")
    controls = {
        "view": widgets.ToggleButtons(options=list(INTRINSIC_VIEWS), description="view",
                                      style=LABELS),
        "across": widgets.ToggleButtons(options=["width", "depth"], description="across",
                                        style=LABELS),
        "task": dropdown(frame["task"].unique().sort().to_list(), description="task"),
        "projection": dropdown(frame["projection"].unique().sort().to_list(), value="fastfood"
                               if "fastfood" in set(frame["projection"]) else None,
                               description="projection"),  # fmt: skip
        "width": slider("width"),
        "depth": slider("depth"),
        "d": slider("d"),
        "threshold": widgets.FloatSlider(value=0.9, min=0.5, max=1.0, step=0.05,
                                         description="threshold", continuous_update=False),
        "parametrizations": choose_many(params, description="parametrizations"),
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

    def unused(values: dict) -> tuple[str, ...]:
        """The size that varies has no slider to use, and ``d`` marks only the curves."""
        return (values["across"],) + (("d",) if values["view"] == "d_int vs D" else ())

    explorer = Explorer(controls, render, name=name, inactive=unused, in_place=True)
    explorer.redraw()
    return explorer


EVERY_VERDICT = "every verdict"
"""The verdict filter of :func:`claims_explorer` that keeps every claim."""


def claims_explorer(card: pl.DataFrame, *, name: str = "claims") -> Explorer:
    """The claims card (:func:`toolkit.analysis.claims.card`) one claim at a time: its
    number and interval against the band it expects (:func:`toolkit.ui.plots.claim_interval`),
    titled with its place among the claims shown. Controls: a verdict (the claim list
    narrows to the claims with it) and the claim."""
    verdicts = [EVERY_VERDICT, *(v for v in VERDICTS if v in set(card["verdict"]))]
    verdict = widgets.ToggleButtons(options=verdicts, description="verdict", style=LABELS)
    claim = dropdown(card["id"].to_list(), description="claim")

    def narrow(change: dict) -> None:  # runs before the explorer redraws for the verdict
        chosen = change["new"]
        rows = card if chosen == EVERY_VERDICT else card.filter(pl.col("verdict") == chosen)
        claim.options = rows["id"].to_list()
        claim.value = claim.options[0]

    verdict.observe(narrow, names="value")

    def render(fig: Figure, values: dict) -> None:
        shown = list(claim.options)  # the claims the verdict leaves, in the card's order
        row = card.row(card["id"].to_list().index(values["claim"]), named=True)
        title = (f"{values['claim']}\n{row['verdict']} "
                 f"({shown.index(values['claim']) + 1} of {len(shown)} shown)")  # fmt: skip
        plots.claim_interval(card, claim=values["claim"], fig=fig, title=title)

    explorer = Explorer({"verdict": verdict, "claim": claim}, render, name=name, in_place=True)
    explorer.redraw()
    return explorer
