"""The numbers the claims card judges: one measure per published claim, read from a store.

Each measure takes the card's :class:`~toolkit.analysis.claim_data.Stores` and returns a
:class:`~toolkit.analysis.claim_data.Measurement`: the toolkit's number for the claim, its
interval with the interval's level, the unit and one phrase saying how both were computed.
A measure computes nothing an analysis module already computes: it picks the row of
:func:`~toolkit.analysis.transfer.drift`, :func:`~toolkit.analysis.coord_check.verdict`,
:func:`~toolkit.analysis.spectra.weight_decay_rules`, ... that the claim is about. When
the stores cannot answer (no such series, too few measured optima) it returns
:meth:`~toolkit.analysis.claim_data.Measurement.absent` with the reason, and the card
says ``cannot tell``. A claim about every layer at once is the largest per-row value with
the envelope of the per-row intervals (:func:`~toolkit.analysis.claim_data.largest`).
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
from scipy import stats

from toolkit.analysis import coord_check, intrinsic, sharpness, spectra
from toolkit.analysis.claim_data import EXACT, LEVEL, Measurement, Stores, largest, magnitude
from toolkit.analysis.fits import difference
from toolkit.analysis.optima import optimal_hyperparameter
from toolkit.analysis.transfer import (
    DRIFT_OK,
    drift,
    predict_loss,
    transferred,
    wider_is_better,
)

SHARPNESS_STORE = "sharpness"
"""The store of top-Hessian-eigenvalue probes (``data/sharpness``); the one place the
sharpness claim reads."""

SHARPNESS_STAT = "preconditioned_sharpness"
"""The statistic the claim reads: the top eigenvalue of the loss Hessian preconditioned by the
optimizer's step sizes, unchanged by the abc-symmetry of parametrizations
(:mod:`toolkit.analysis.sharpness`)."""


def _one(frame: pl.DataFrame, where: dict) -> dict | None:
    """The single row of ``frame`` matching ``where`` (column -> value), else ``None``."""
    rows = frame.filter(*(pl.col(k) == v for k, v in where.items()))
    return rows.row(0, named=True) if rows.height == 1 else None


# --- transfer of the optimal learning rate -------------------------------------------------

OPTIMUM_NAMES = {"lr": "LR", "weight_decay": "weight decay"}
"""How a unit names the hyperparameter whose optimum drifts."""


def _drifts(stores: Stores, store: str, axis: str, x: str = "lr",
            loss: str = "final_train_loss") -> pl.DataFrame:  # fmt: skip
    """:func:`~toolkit.analysis.transfer.drift` of the optimal ``x`` (by ``loss``) of every
    series of ``store`` along ``axis``."""
    runs = stores.runs(store)
    optima = stores.shared(("optima", store, x, loss),
                           lambda: optimal_hyperparameter(runs, x, loss=loss))  # fmt: skip
    return stores.shared(("drift", store, axis, x, loss),
                         lambda: drift(optima, axis=axis, level=LEVEL))  # fmt: skip


def _transferred_mup_adam(stores: Stores) -> pl.DataFrame:
    """:func:`~toolkit.analysis.transfer.transferred` of ``width_transfer``'s muP, Adam runs."""
    frame = stores.shared(("transferred", "width_transfer"),
                          lambda: transferred(stores.runs("width_transfer")))  # fmt: skip
    return frame.filter(pl.col("parametrization") == "mup", pl.col("optimizer") == "adam")


def optimum_drift(stores: Stores, store: str, *, axis: str, where: dict, x: str = "lr",
                  loss: str = "final_train_loss") -> Measurement:  # fmt: skip
    """The slope of ``log2`` optimal ``x`` (the LR unless named; by ``loss``) against
    ``log2(axis)`` of the series ``where`` (:func:`~toolkit.analysis.transfer.drift` on
    :func:`~toolkit.analysis.optima.optimal_hyperparameter`: measured optima only, censored
    ones counted as bounds)."""
    unit = f"octaves of optimal {OPTIMUM_NAMES.get(x, x)} per doubling of {axis.replace('_', ' ')}"
    line = (f"line through the quadratic-refined optima against log2 {axis} "
            f"(toolkit.analysis.transfer.drift), {LEVEL:.0%} interval")  # fmt: skip
    row = _one(_drifts(stores, store, axis, x, loss), where)
    if row is None:
        series = ", ".join(f"{k} {v}" for k, v in where.items())
        return Measurement.absent(f"no single {series} series in {store}", unit=unit,
                                  method=line)  # fmt: skip
    note = (f"{row['points']} measured optima, {row['censored']} censored at the grid's edge, "
            f"{row['contradicting']} contradicting the line")  # fmt: skip
    if row["status"] != DRIFT_OK:
        return Measurement.absent(f"no drift can be fitted: {note}", unit=unit, method=line)
    return Measurement(row["slope"], row["slope_lo"], row["slope_hi"], LEVEL, unit,
                       f"{row['method']} {line}", note)  # fmt: skip


def drift_gap(stores: Stores, store: str, *, axis: str, where: dict, than: dict) -> Measurement:
    """``|drift(where)| - |drift(than)|``: how much less the optimum of one series moves
    than another's (:func:`optimum_drift` of each), with the two intervals' half-widths in
    quadrature (:func:`~toolkit.analysis.fits.difference`, on each slope's magnitude)."""
    unit = f"octaves of optimal LR per doubling of {axis}, |drift| difference"
    method = (f"difference of the two |drift| values (toolkit.analysis.transfer.drift), "
              f"{LEVEL:.0%} half-widths in quadrature")  # fmt: skip
    mine, theirs = (optimum_drift(stores, store, axis=axis, where=w) for w in (where, than))
    for measured in (mine, theirs):
        if measured.missing is not None:
            return Measurement.absent(measured.missing, unit=unit, method=method)
    sizes = [
        [float(x[0]) for x in magnitude(*(np.array([v]) for v in (m.value, m.lo, m.hi)))]
        for m in (mine, theirs)
    ]
    gap = difference(*sizes[0], *sizes[1])
    note = f"|drift| {sizes[0][0]:.3f} against {sizes[1][0]:.3f}"
    return Measurement(*gap, LEVEL, unit, method, note)


def base_width_gap(runs: pl.DataFrame) -> tuple[float, int, int]:
    """Largest ``|final_train_loss(muP) - final_train_loss(SP)|`` over the ``runs`` at their
    base width that share optimizer, LR and seed: ``(gap, pairs, split)``. ``split`` counts
    the pairs where one run diverged and the other did not; they differ without bound, so
    the gap is then infinite. NaN without a pair of finished runs."""
    base = runs.filter(pl.col("width") == pl.col("base_width"))
    index = ["optimizer", "lr", "seed"]
    if not {"sp", "mup"} <= set(base["parametrization"]):
        return math.nan, 0, 0
    losses = base.pivot(on="parametrization", index=index, values="final_train_loss")
    statuses = base.pivot(on="parametrization", index=index, values="status")
    paired = statuses.filter(pl.col("sp").is_not_null(), pl.col("mup").is_not_null())
    split = paired.filter(pl.col("sp") != pl.col("mup")).height
    finished = paired.filter(pl.col("sp") == "ok", pl.col("mup") == "ok")
    both = losses.join(finished, on=index, how="semi")
    if split:
        return math.inf, paired.height, split
    if both.height == 0:
        return math.nan, paired.height, 0
    return float((both["mup"] - both["sp"]).abs().max()), paired.height, 0


def sp_equals_mup_at_base(stores: Stores) -> Measurement:
    """:func:`base_width_gap` of ``width_transfer``, an exact number (the same seeds and
    data under both parametrizations)."""
    unit = "final training loss (nats)"
    method = "max over paired runs (same optimizer, LR, seed) at the base width; exact"
    runs = stores.runs("width_transfer")
    gap, pairs, split = base_width_gap(runs)
    if math.isnan(gap):
        return Measurement.absent("no SP and muP run pair finished at the base width",
                                  unit=unit, method=method)  # fmt: skip
    width = runs.filter(pl.col("width") == pl.col("base_width"))["width"][0]
    note = f"{pairs} pairs at width {width}, {split} where one run diverged and the other did not"
    return Measurement(gap, gap, gap, EXACT, unit, method, note)


def loss_change_with_width(stores: Stores) -> Measurement:
    """The largest change in loss at the LR transferred from the base width between
    neighbouring widths (muP, Adam, ``width_transfer``): negative when every step in width
    lowers the loss (:func:`~toolkit.analysis.transfer.transferred`, the frame
    :func:`~toolkit.analysis.transfer.wider_is_better` judges)."""
    unit = "change in final training loss per width step (nats)"
    method = (f"envelope of normal {LEVEL:.0%} intervals of each neighbouring difference of "
              "seed means (seed standard errors in quadrature)")  # fmt: skip
    frame = _transferred_mup_adam(stores).sort("width")
    if frame.height < 2:
        return Measurement.absent("fewer than two widths under muP with Adam", unit=unit,
                                  method=method)  # fmt: skip
    loss, se = frame["loss_transferred"].to_numpy(), frame["loss_transferred_se"].to_numpy()
    step = np.diff(loss)
    half = stats.norm.ppf(0.5 + LEVEL / 2) * np.hypot(se[1:], se[:-1])
    value, lo, hi = largest(step, step - half, step + half)
    widths = frame["width"].to_list()
    mup = stores.runs("width_transfer").filter(
        pl.col("parametrization") == "mup", pl.col("optimizer") == "adam"
    )
    falling = wider_is_better(mup)["wider_is_better"][0]
    note = (f"widths {widths[0]}-{widths[-1]}, seed standard errors from "
            f"{mup['seed'].n_unique()} seeds; the seed means "
            f"{'do' if falling else 'do not'} fall at every step (transfer.wider_is_better)")
    return Measurement(value, lo, hi, LEVEL, unit, method, note)


def loss_prediction(stores: Stores) -> Measurement:
    """Observed minus predicted loss of the widest muP (Adam) model at the transferred LR,
    the power law ``a N**-b + c`` fitted on every narrower width
    (:func:`~toolkit.analysis.transfer.predict_loss`); the interval is the prediction's,
    carried to the difference."""
    unit = "final training loss (nats), observed minus predicted"
    method = (f"power law a N^-b + c on the narrower widths, {LEVEL:.0%} prediction interval "
              "(delta method plus seed noise; toolkit.analysis.transfer.predict_loss)")  # fmt: skip
    frame = _transferred_mup_adam(stores).sort("n_params")
    if frame.height < 4:
        return Measurement.absent("fewer than four widths under muP with Adam", unit=unit,
                                  method=method)  # fmt: skip
    fit_up_to = float(frame["n_params"][-2])
    widest = predict_loss(frame, fit_up_to=fit_up_to, level=LEVEL).row(-1, named=True)
    if not widest["interval"]:
        return Measurement.absent("the fit gives no prediction interval", unit=unit,
                                  method=method)  # fmt: skip
    observed = widest["loss"]
    note = (f"width {frame['width'][-1]} observed {observed:.3f}, predicted "
            f"{widest['predicted']:.3f} from {frame.height - 1} narrower widths")  # fmt: skip
    return Measurement(observed - widest["predicted"], observed - widest["predicted_hi"],
                       observed - widest["predicted_lo"], LEVEL, unit, method, note)  # fmt: skip


# --- coordinate check ----------------------------------------------------------------------

COORD_CHECK_STORE = "coord_check"
"""The store of coordinate checks (``data/coord_check``: the ``activations`` probe at steps
0-3 of Adam at a large LR); the one place the coordinate-check claims read."""

COORD_STAT = "l1"
"""The coordinate size the claims judge: each layer's mean ``|activation|``, as the mup
package's coordinate check plots it."""

_COORD_UNIT = "octaves of mean |activation| per doubling of width"


def _coord_verdict(stores: Stores, parametrization: str) -> pl.DataFrame:
    """:func:`toolkit.analysis.coord_check.verdict` on the coordinate-check store's
    activation sizes (:data:`COORD_STAT`) of one parametrization."""
    probes = stores.probes(COORD_CHECK_STORE).filter(
        pl.col("parametrization") == parametrization, pl.col("stat") == COORD_STAT
    )
    per_seed = probes.select(
        "width", "seed", "layer", "role", "step", "stat", "value",
        diverged=pl.col("status") == "diverged",
    )  # fmt: skip
    return coord_check.verdict(per_seed, stat=COORD_STAT, level=LEVEL)


def _coord_setting(stores: Stores) -> str:
    """The optimizers and LRs of the coordinate-check store's runs, e.g.
    ``adam at LR 2^-7``."""
    runs = stores.runs(COORD_CHECK_STORE)
    pairs = runs.select("optimizer", "lr").unique().sort("optimizer", "lr").iter_rows()
    return ", ".join(f"{optimizer} at LR 2^{math.log2(lr):g}" for optimizer, lr in pairs)


def coord_check_flat(stores: Stores) -> Measurement:
    """Under muP, the largest width slope of any layer's activation RMS: ``|slope|`` for
    input and hidden layers, the growth ``max(slope, 0)`` for the readout (which may
    shrink), as :func:`~toolkit.analysis.coord_check.verdict` judges them."""
    method = (f"coord_check.verdict on mean |activation| ({COORD_CHECK_STORE} store); largest "
              f"over layers and steps, envelope of per-row {LEVEL:.0%} t-intervals over seeds")
    table = _coord_verdict(stores, "mup").drop_nulls("slope_lo")
    if table.height == 0:
        return Measurement.absent("no muP activation probes with an interval", unit=_COORD_UNIT,
                                  method=method)  # fmt: skip
    slope, lo, hi = (table[c].to_numpy() for c in ("slope", "slope_lo", "slope_hi"))
    size, size_lo, size_hi = magnitude(slope, lo, hi)
    readout = table["role"].to_numpy() == "output"
    size = np.where(readout, np.maximum(slope, 0), size)
    size_lo = np.where(readout, np.maximum(lo, 0), size_lo)
    size_hi = np.where(readout, np.maximum(hi, 0), size_hi)
    value, low, high = largest(size, size_lo, size_hi)
    worst = table.row(int(np.argmax(size)), named=True)
    note = (f"{table.height} layer-steps ({_coord_setting(stores)}, steps "
            f"0-{table['step'].max()}), "
            f"{table['seeds'].max()} seeds; largest at {worst['layer']} step "
            f"{worst['step']}")  # fmt: skip
    return Measurement(value, low, high, LEVEL, _COORD_UNIT, method, note)


def coord_check_grows(stores: Stores) -> Measurement:
    """Under SP, the largest width slope of a hidden layer's activation RMS, over layers and
    recorded steps (:func:`~toolkit.analysis.coord_check.verdict`)."""
    method = (f"coord_check.verdict on mean |activation| ({COORD_CHECK_STORE} store); largest "
              f"over hidden layers and steps, envelope of per-row {LEVEL:.0%} t-intervals over "
              "seeds")
    table = _coord_verdict(stores, "sp").filter(pl.col("role") == "hidden").drop_nulls("slope_lo")
    if table.height == 0:
        return Measurement.absent("no SP hidden-layer probes with an interval",
                                  unit=_COORD_UNIT, method=method)  # fmt: skip
    slope = table["slope"].to_numpy()
    value, lo, hi = largest(slope, table["slope_lo"].to_numpy(), table["slope_hi"].to_numpy())
    worst = table.row(int(np.argmax(slope)), named=True)
    note = (f"{table.height} hidden layer-steps ({_coord_setting(stores)}), "
            f"{table['seeds'].max()} seeds; largest at "
            f"{worst['layer']} step {worst['step']}")  # fmt: skip
    return Measurement(value, lo, hi, LEVEL, _COORD_UNIT, method, note)


# --- spectra -------------------------------------------------------------------------------

WEIGHT_DECAY_STORE = "weight_decay_transfer"
"""The store of AdamW runs long enough for the steady state (``data/weight_decay_transfer``,
2000 steps, spectra recorded): the one place the two weight-decay spectra claims read."""


def _decay_probes(stores: Stores) -> pl.DataFrame:
    return stores.probes(WEIGHT_DECAY_STORE)


def sigma_max_lr_over_wd(stores: Stores) -> Measurement:
    """Exponent of the hidden matrix's ``sigma_max`` in ``sqrt(lr / wd)`` at the last step,
    one OLS fit per width (:func:`~toolkit.analysis.spectra.lr_wd_exponent`): 1 when
    ``sigma_max ~ sqrt(lr/wd)``. The law is for AdamW's steady state, so only runs that
    trained for :data:`~toolkit.analysis.spectra.STEADY_TIMESCALES` timescales or more
    count, under the coupled rule, where every tensor's per-step decay is ``lr * wd`` at
    every width (:func:`~toolkit.analysis.spectra.adamw_timescales`). The number is the
    width whose exponent lies farthest from 1, the interval the envelope of the widths'."""
    unit = "exponent of sigma_max in sqrt(lr / wd)"
    method = (f"OLS of log sigma_max on log sqrt(lr/wd) per width, hidden matrices at the last "
              f"step of runs with >= {spectra.STEADY_TIMESCALES:g} AdamW timescales (coupled "
              f"rule); width farthest from 1, envelope of per-width t {LEVEL:.0%} intervals "
              "(spectra.lr_wd_exponent)")  # fmt: skip
    last = spectra.adamw_timescales(_decay_probes(stores)).filter(
        pl.col("step") == pl.col("steps"),
        pl.col("role") == "hidden",
        pl.col("weight_decay_scaling") == "coupled",
        pl.col("timescales") >= spectra.STEADY_TIMESCALES,
    )
    fits = (
        spectra.lr_wd_exponent(last, by=("width", "step", "role"), level=LEVEL)
        .filter(pl.col("fit") == spectra.FIT_OK)
        .sort("width")
    )
    if fits.height == 0:
        return Measurement.absent("no steady-state hidden-matrix spectra across (lr, wd) under "
                                  "the coupled rule", unit=unit, method=method)  # fmt: skip
    exponent = fits["exponent"].to_numpy()
    row = fits.row(int(np.argmax(np.abs(exponent - 1.0))), named=True)
    widths = ", ".join(f"{w} {e:+.2f}" for w, e in fits.select("width", "exponent").iter_rows())
    note = (f"{fits['points'].sum()} matrices, {row['sizes']} values of lr/wd per width, at step "
            f"{row['step']}; per width: {widths}")  # fmt: skip
    return Measurement(row["exponent"], float(fits["exponent_lo"].min()),
                       float(fits["exponent_hi"].max()), LEVEL, unit, method, note)  # fmt: skip


def sqrt_width_decay_flat(stores: Stores) -> Measurement:
    """Width exponent of the hidden matrices' ``sigma_max`` under ``wd ~ sqrt(width)`` at the
    (LR, WD) pair transferred from the smallest width, its validation-loss optimum
    (:func:`~toolkit.analysis.spectra.weight_decay_rules`)."""
    unit = "exponent of sigma_max in width"
    method = (f"OLS of log sigma_max on log width, one point per run at the (lr, wd) of the "
              f"smallest width's lowest validation loss, t {LEVEL:.0%} interval "
              "(spectra.weight_decay_rules)")  # fmt: skip
    rules = spectra.weight_decay_rules(stores.runs(WEIGHT_DECAY_STORE), _decay_probes(stores),
                                       level=LEVEL, loss=spectra.DECAY_OBJECTIVE)  # fmt: skip
    row = _one(rules, {"weight_decay_scaling": "sqrt_width"})
    if row is None or not math.isfinite(row["sigma_exponent_lo"]):
        return Measurement.absent("no sqrt_width weight-decay runs with an exponent", unit=unit,
                                  method=method)  # fmt: skip
    others = ", ".join(f"{r['weight_decay_scaling']} {r['sigma_exponent']:+.3f}"
                       for r in rules.iter_rows(named=True)
                       if r["weight_decay_scaling"] != "sqrt_width")  # fmt: skip
    note = (f"{row['widths']} widths at lr {row['lr']:g}, wd {row['weight_decay']:g}, last step; "
            f"other rules: {others}")  # fmt: skip
    return Measurement(row["sigma_exponent"], row["sigma_exponent_lo"], row["sigma_exponent_hi"],
                       LEVEL, unit, method, note)  # fmt: skip


def spectral_condition(stores: Stores) -> Measurement:
    """Under muP, the largest ``|k|`` of ``cond_ratio ~ width**k`` (``||W||_2 /
    sqrt(fan_out/fan_in)``) over the hidden matrices at the last step
    (:func:`~toolkit.analysis.spectra.fit_exponent`)."""
    unit = "exponent of ||W||_2 / sqrt(fan_out/fan_in) in width"
    method = (f"OLS of log cond_ratio on log width per hidden layer (spectra.fit_exponent), "
              f"largest |k|, envelope of per-layer t {LEVEL:.0%} intervals")  # fmt: skip
    last = stores.probes("spectra").filter(
        pl.col("study") == "spectra",
        pl.col("parametrization") == "mup",
        pl.col("role") == "hidden",
        pl.col("step") == pl.col("steps"),
    )
    fits = spectra.fit_exponent(last, stat="cond_ratio", level=LEVEL).filter(
        pl.col("fit") == spectra.FIT_OK
    )
    if fits.height == 0:
        return Measurement.absent("no muP hidden-layer spectra across widths", unit=unit,
                                  method=method)  # fmt: skip
    k, k_lo, k_hi = magnitude(*(fits[c].to_numpy() for c in ("exponent", "exponent_lo",
                                                            "exponent_hi")))  # fmt: skip
    value, lo, hi = largest(k, k_lo, k_hi)
    note = f"{fits.height} hidden layers, {fits['sizes'].max()} widths"
    return Measurement(value, lo, hi, LEVEL, unit, method, note)


def sharpness_width_exponent(stores: Stores) -> Measurement:
    """Under muP, the largest ``|k|`` over optimizers of ``lambda_max ~ width**k`` for the
    preconditioned sharpness at the last probe step, from the :data:`SHARPNESS_STORE`
    store (:func:`toolkit.analysis.sharpness.width_exponent`: OLS through the seed means),
    with the envelope of the rows' intervals. Without that store the card says "no
    sharpness store shipped" (:func:`toolkit.analysis.claims.card` checks each claim's
    store before measuring)."""
    unit = "|exponent| of the preconditioned top Hessian eigenvalue in width"
    method = (f"OLS of log2 seed-mean sharpness on log2 width at the last probe step, t "
              f"{LEVEL:.0%} interval; largest |exponent| over optimizers, envelope "
              "interval")  # fmt: skip
    frame = sharpness.sharpness_frame(stores.probes(SHARPNESS_STORE), stores.runs(SHARPNESS_STORE),
                                      stat=SHARPNESS_STAT)  # fmt: skip
    fits = sharpness.width_exponent(frame.filter(pl.col("parametrization") == "mup"),
                                    level=LEVEL)  # fmt: skip
    fits = fits.filter(pl.col("step") == pl.col("step").max().over("optimizer"),
                       pl.col("status") == sharpness.FIT_OK)  # fmt: skip
    if fits.is_empty():
        return Measurement.absent(f"the {SHARPNESS_STORE} store has no muP {SHARPNESS_STAT} "
                                  "probes across widths", unit=unit, method=method)  # fmt: skip
    k, k_lo, k_hi = magnitude(*(fits[c].to_numpy() for c in ("exponent", "exponent_lo",
                                                            "exponent_hi")))  # fmt: skip
    value, lo, hi = largest(k, k_lo, k_hi)
    each = ", ".join(f"{r['optimizer']} {r['exponent']:+.2f} [{r['exponent_lo']:+.2f}, "
                     f"{r['exponent_hi']:+.2f}]" for r in fits.iter_rows(named=True))  # fmt: skip
    note = f"step {fits['step'].max()}, {fits['widths'].max()} widths: {each}"
    return Measurement(value, lo, hi, LEVEL, unit, method, note)


# --- intrinsic dimension -------------------------------------------------------------------

def _d_int(stores: Stores) -> pl.DataFrame:
    """:func:`~toolkit.analysis.intrinsic.d_int_table` at 90% of the intrinsic-dimension store."""
    return stores.shared(("d_int90",), lambda: intrinsic.d_int_table(
        intrinsic.load_measurements(stores.root / "intrinsic_dimension"), threshold=0.9
    ))  # fmt: skip


TOY_STORE = "intrinsic_toy"
"""The store of Li et al.'s toy problem (``data/intrinsic_toy``)."""


def toy_problem(stores: Stores) -> Measurement:
    """``d_int`` of Li et al.'s toy problem (:func:`~toolkit.analysis.intrinsic.toy_d_int`)
    over every projection and seed: the median, with the smallest and largest as its
    range. Exact least squares, no sampling error in a seed's number: the range is the
    spread over seeds and projections (level :data:`EXACT`)."""
    unit = "dimensions"
    method = ("smallest d whose random subspace holds an exact minimum (least squares in "
              "float64), per projection and seed; median, range over all")  # fmt: skip
    table = intrinsic.toy_d_int(stores.runs(TOY_STORE))
    if table.is_empty() or table["d_int"].null_count():
        return Measurement.absent("some subspace up to the largest d measured held no exact "
                                  "minimum", unit=unit, method=method)  # fmt: skip
    row = table.row(0, named=True)
    note = (f"D = {row['D']}, {row['groups']} constraints; {table['seed'].n_unique()} seeds "
            f"of each of {', '.join(table['projection'].unique(maintain_order=True))}")
    return Measurement(float(table["d_int"].median()), float(table["d_int"].min()),
                       float(table["d_int"].max()), EXACT, unit, method, note)  # fmt: skip


def d_int_flat(stores: Stores) -> Measurement:
    """Exponent of ``d_int90 ~ D**k`` across widths (depth 2, SP, Fastfood, digits),
    :func:`~toolkit.analysis.intrinsic.d_int_scaling`."""
    unit = "exponent of d_int90 in the parameter count D"
    table = _d_int(stores).filter(
        pl.col("task") == "digits", pl.col("parametrization") == "sp",
        pl.col("projection") == "fastfood", pl.col("depth") == 2,
    )  # fmt: skip
    fit = intrinsic.d_int_scaling(table, by=("task",), level=LEVEL)
    method = (f"line through log2 d_int90 against log2 D weighted by each d_int's interval "
              f"(intrinsic.d_int_scaling), {LEVEL:.0%} interval")  # fmt: skip
    if fit.height != 1 or not math.isfinite(fit["exponent_lo"][0]):
        return Measurement.absent("fewer than three bounded d_int90 across widths on digits",
                                  unit=unit, method=method)  # fmt: skip
    row = fit.row(0, named=True)
    widths = table["width"].sort().to_list()
    note = (f"widths {widths[0]}-{widths[-1]} (D {table['D'].min():,}-{table['D'].max():,}), "
            f"{row['points']} points")  # fmt: skip
    return Measurement(row["exponent"], row["exponent_lo"], row["exponent_hi"], LEVEL, unit,
                       f"{row['method']}: {method}", note)  # fmt: skip


def projections_agree(stores: Stores) -> Measurement:
    """The largest ``|log2 d_int90(Fastfood) - log2 d_int90(dense)|`` over the widths where
    both were measured (digits, SP), each difference's interval from the two d_int
    intervals' half-widths in quadrature (:func:`~toolkit.analysis.fits.difference`)."""
    unit = "octaves of d_int90 (|log2 Fastfood / dense|)"
    method = (f"difference of log2 d_int90 with the two intervals' half-widths in quadrature, "
              f"largest over widths, envelope of {LEVEL:.0%} intervals")  # fmt: skip
    table = _d_int(stores).filter(pl.col("task") == "digits", pl.col("parametrization") == "sp")
    logs = table.select("projection", "width", "depth", *(pl.col(c).log(2) for c in
                                                          ("d_int", "d_int_lo", "d_int_hi")))
    pairs = logs.filter(pl.col("projection") == "fastfood").join(
        logs.filter(pl.col("projection") == "dense"), on=["width", "depth"], suffix="_dense"
    )
    gaps = [difference(r["d_int"], r["d_int_lo"], r["d_int_hi"], r["d_int_dense"],
                       r["d_int_lo_dense"], r["d_int_hi_dense"])
            for r in pairs.iter_rows(named=True)]  # fmt: skip
    gaps = [g for g in gaps if g is not None]
    if not gaps:
        return Measurement.absent("no width has bounded d_int90 from both projections",
                                  unit=unit, method=method)  # fmt: skip
    value, lo, hi = largest(*magnitude(*(np.array(part) for part in zip(*gaps, strict=True))))
    note = f"widths {', '.join(str(w) for w in pairs['width'].sort())} on digits (SP)"
    return Measurement(value, lo, hi, LEVEL, unit, method, note)
