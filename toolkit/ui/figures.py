"""Headline figures of the shipped studies, drawn from their stores.

One recipe per study: runs frame in, Figure out. The notebooks draw their paper
figure with these, and ``python -m toolkit figures`` renders them all (the
pictures in the README come from that command).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import polars as pl
from matplotlib.figure import Figure

from toolkit.analysis import transfer as analysis
from toolkit.analysis.optima import hyperparameter_curves, optimal_hyperparameter
from toolkit.analysis.spectra import DECAY_OBJECTIVE
from toolkit.paths import shipped
from toolkit.ui import plots
from toolkit.ui.layout import page
from toolkit.ui.style import export


def width_transfer(runs: pl.DataFrame) -> Figure:
    """SP vs muP with Adam: final training loss against log2 LR, one line per width."""
    adam = runs.filter(pl.col("optimizer") == "adam")
    return plots.transfer_curves(
        analysis.lr_curves(adam), optima=analysis.optimal_lr(adam), title="MLP, MNIST-1D, Adam"
    )


def depth_transfer(runs: pl.DataFrame) -> Figure:
    """One panel per depth rule, one line per number of residual blocks."""
    return plots.transfer_curves(
        analysis.lr_curves(runs), hue="depth", col="depth_rule",
        optima=analysis.optimal_lr(runs), title="residual MLP, width 64, Adam",
    )  # fmt: skip


def weight_decay_transfer(runs: pl.DataFrame) -> Figure:
    """Validation loss (:data:`~toolkit.analysis.spectra.DECAY_OBJECTIVE`) over the (LR,
    weight decay) grid per width under the sqrt(width) rule."""
    rule = runs.filter(pl.col("weight_decay_scaling") == "sqrt_width")
    return plots.loss_heatmaps(
        analysis.lr_curves(rule, loss=DECAY_OBJECTIVE),
        title="AdamW, weight decay proportional to sqrt(width): validation loss",
    )


def horizon(runs: pl.DataFrame) -> Figure:
    """Optimal log2 LR against log2 training steps, with the fitted slope."""
    optima = analysis.optimal_lr(runs)
    return plots.optimum_vs_size(
        optima, x="steps", drift=analysis.drift(optima, axis="steps"), title="muP, cosine decay"
    )


def hyperparameter_transfer(runs: pl.DataFrame, *, x: str = "output_alpha") -> Figure:
    """SP vs muP with Adam at one LR: final training loss against log2 of the swept
    hyperparameter ``x`` (where it is swept, the others at 1), one line per width."""
    mine = analysis.swept(runs, x)
    return plots.transfer_curves(
        hyperparameter_curves(mine, x), x=f"log2_{x}", optima=optimal_hyperparameter(mine, x),
        title=f"MLP, MNIST-1D, Adam: {x}",
    )  # fmt: skip


#: Study name (its store in ``data/``) -> recipe.
RECIPES: dict[str, Callable[[pl.DataFrame], Figure]] = {
    "width_transfer": width_transfer,
    "depth_transfer": depth_transfer,
    "weight_decay_transfer": weight_decay_transfer,
    "horizon": horizon,
    "hyperparameter_transfer": hyperparameter_transfer,
}


def render_all(
    out: str | Path, *, format: str = "png", venue: str = "neurips", width: str = "column"
) -> list[Path]:
    """Draw every recipe from its shipped store, laid out for ``venue``'s page
    (:func:`toolkit.ui.layout.page`), and export it to ``out/<study>.<format>``."""
    from toolkit import store

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for study, recipe in RECIPES.items():
        runs = store.open(shipped(study)).runs().collect()
        with page(venue, width):
            fig = recipe(runs)
            written += export(fig, out / f"{study}.{format}", venue=venue, width=width)
    return written
