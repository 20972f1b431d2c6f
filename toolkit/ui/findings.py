"""What a study's data shows, as sentences built from the numbers in its store.

A notebook's "what the data shows" cell calls one of these, so its prose quotes the
numbers of the store it was run on (shipped or regenerated), never numbers typed by
hand that a regeneration could silently contradict. Each function takes the runs
frame of its study and returns Markdown.
"""

from __future__ import annotations

import math

import polars as pl

from toolkit.analysis.fits import META_REGRESSION, difference
from toolkit.analysis.optima import (
    CONFIG_KEYS,
    FIT_OK,
    config_keys,
    grid_disagreement,
    hyperparameter_curves,
    joint_optimum,
    lr_curves,
    optimal_hyperparameter,
    optimal_lr,
    swept,
)
from toolkit.analysis.spectra import DECAY_OBJECTIVE
from toolkit.analysis.transfer import drift, power_law_exponent, transfer_regret
from toolkit.engine.rules import LR_CONSTANTS
from toolkit.errors import InputError
from toolkit.ui.style import ordered

PARAMETRIZATION_NAMES = {"sp": "SP", "mup": "muP", "ntk": "NTK", "mf": "mean-field"}
"""How sentences name the parametrizations."""


def _octaves(value: float) -> str:
    return f"{value:+.2f} octave{'s' if abs(value) != 1 else ''}"


def two_to(log2: float) -> str:
    """``2^k`` for a log2 value ``k`` (two decimals unless whole)."""
    return f"2^{log2:.0f}" if float(log2).is_integer() else f"2^{log2:.2f}"


def drift_sentence(row: dict) -> str:
    """The drift of one configuration, with its interval and how it was fitted."""
    if row["slope"] is None:
        return (
            f"no drift can be fitted: only {row['points']} optima are measured "
            f"({row['censored']} lie at the grid's edge)"
        )
    text = (
        f"a fitted drift of {_octaves(row['slope'])} per doubling "
        f"(95% interval [{row['slope_lo']:+.2f}, {row['slope_hi']:+.2f}], "
        f"{row['points']} measured optima"
    )
    if row["censored"]:
        text += f"; {row['censored']} more at the grid's edge"
        if row["contradicting"]:
            text += f", {row['contradicting']} of them contradicting the line"
    return text + ")"


def _label(row: dict, varying: list[str]) -> str:
    return ", ".join(PARAMETRIZATION_NAMES.get(str(row[k]), str(row[k])) for k in varying)


def transfer(runs: pl.DataFrame, *, axis: str = "width") -> str:
    """One bullet per series (the settings that differ between series name it): the grid
    optimum at the smallest and the largest size, the fitted drift with its interval,
    and the loss the LR tuned at the smallest size costs at the largest."""
    optima = optimal_lr(runs)
    drifts = drift(optima, axis=axis)
    regret = transfer_regret(runs, axis=axis)
    keys = [k for k in CONFIG_KEYS if k in drifts.columns and k != axis]
    varying = [k for k in keys if drifts[k].n_unique() > 1] or keys[:1]
    lines = []
    rank = [  # series in the order they are shown (SP before muP, ...)
        pl.col(k).replace_strict({v: i for i, v in enumerate(ordered(drifts, k))}, default=None)
        for k in varying
    ]
    for row in drifts.sort(rank, nulls_last=True).iter_rows(named=True):
        same = [pl.col(k).eq_missing(row[k]) for k in keys]
        series = optima.filter(*same).sort(axis)
        first, last = series.row(0, named=True), series.row(-1, named=True)
        cost = regret.filter(*same, pl.col(axis) == last[axis])["regret"]
        lines.append(
            f"- **{_label(row, varying)}**: the best grid learning rate goes from "
            f"{two_to(first['log2_lr_grid'])} at {axis} {first[axis]} to "
            f"{two_to(last['log2_lr_grid'])} at {last[axis]}, {drift_sentence(row)}; the LR "
            f"tuned at {axis} {first[axis]} costs {cost[0]:.3f} in loss at {axis} {last[axis]}."
        )
    return "\n".join(lines)


def grid_optima(best: pl.DataFrame, *, by: tuple[str, ...]) -> str:
    """Whether a grid can locate its optimum: :func:`toolkit.analysis.transfer.best_cells`
    rows that sit on an edge of their grid are bounds, not locations, and the sentence
    says how many there are and what that leaves unanswered."""
    edges = [c for c in best.columns if c.endswith("_at_edge")]
    if not edges:
        return ""
    on_edge = best.filter(pl.any_horizontal(*edges))
    axes = " / ".join(c.removesuffix("_at_edge").replace("log2_lr", "learning rate") for c in edges)
    if on_edge.height == 0:
        return f"All {best.height} best cells are inside their {axes} grid: each locates one."
    groups = ", ".join(
        "/".join(str(row[k]) for k in by) for row in on_edge.select(by).iter_rows(named=True)
    )
    verdict = (
        "so this grid cannot say where the optimum is, nor whether a rule keeps it in place: "
        "the study needs a grid around the optimum (and longer training) to answer"
        if on_edge.height == best.height
        else "those optima are bounds; the others are located"
    )
    return (
        f"**{on_edge.height} of {best.height} best cells lie on an edge of their {axes} grid** "
        f"({groups}), {verdict}."
    )


def _contains_zero(row: dict) -> bool:
    return row["slope"] is not None and row["slope_lo"] <= 0 <= row["slope_hi"]


def weight_decay_transfer(runs: pl.DataFrame, *, loss: str = DECAY_OBJECTIVE) -> str:
    """One bullet per weight-decay rule of an (LR, WD) grid study: the best cell at the
    smallest and the largest width, how many widths have their optimum inside the grid on
    both axes (:func:`~toolkit.analysis.optima.joint_optimum`), the fitted drift of the
    optimal LR and of the optimal WD per doubling of width with their intervals; then the
    AdamW timescale ``1 / (lr * wd)`` of the smallest width's best cell against the
    training length, and which rules keep both drifts' intervals around 0. ``loss`` is
    the loss minimised (:data:`~toolkit.analysis.spectra.DECAY_OBJECTIVE`)."""
    lr = joint_optimum(runs, "lr", "weight_decay", loss=loss)
    wd = joint_optimum(runs, "weight_decay", "lr", loss=loss)
    lr_drift, wd_drift = drift(lr, axis="width"), drift(wd, axis="width")
    lines, flat = [], []
    for rule in ordered(lr, "weight_decay_scaling"):
        mine_lr = lr.filter(pl.col("weight_decay_scaling") == rule).sort("width")
        mine_wd = wd.filter(pl.col("weight_decay_scaling") == rule).sort("width")
        inside = mine_lr.join(mine_wd, on="width").filter(
            (pl.col("fit") == FIT_OK) & (pl.col("fit_right") == FIT_OK)
        )
        cells = [
            f"LR {two_to(r['log2_lr_grid'])}, WD {_constant(r['weight_decay_at_best'])} at "
            f"width {r['width']}"
            for r in (mine_lr.row(0, named=True), mine_lr.row(-1, named=True))
        ]
        drifts = [
            (name, frame.filter(pl.col("weight_decay_scaling") == rule).rows(named=True))
            for name, frame in (("LR", lr_drift), ("WD", wd_drift))
        ]
        if all(rows and _contains_zero(rows[0]) for _, rows in drifts):
            flat.append(rule)
        said = "; ".join(
            f"optimal {name}: {drift_sentence(rows[0]) if rows else 'one width, no drift'}"
            for name, rows in drifts
        )
        lines.append(
            f"- **{rule}**: best cell {cells[0]}, {cells[1]}; {inside.height} of "
            f"{mine_lr.height} widths have their optimum inside the grid on both axes; {said}."
        )
    closing = (f"Rules whose optimal LR and WD both have 0 inside their drift's interval: "
               f"{', '.join(flat)}." if flat else
               "No rule has 0 inside the intervals of both its LR and its WD drift.")  # fmt: skip
    base = lr.join(runs.select("width", "base_width").unique(), on="width").filter(
        pl.col("width") == pl.col("base_width")
    )
    if base.height:  # at the base width every tensor decays by lr * wd per step, whatever the rule
        row, steps = base.row(0, named=True), int(runs["steps"].max())
        tau = 1 / (2.0 ** row["log2_lr_grid"] * row["weight_decay_at_best"])
        closing = (f"At the base width {row['width']} every tensor decays by `lr * wd` per step, "
                   f"so the best cell's AdamW timescale `1 / (lr * wd)` is {tau:.0f} steps, "
                   f"{tau / steps:.2f} of the {steps} trained. {closing}")  # fmt: skip
    return "\n".join([*lines, "", closing])


def _unmeasured(optimum: dict) -> str:
    """Why an optimum is no measurement: a bound at the grid's edge, or its fit's status."""
    if optimum["censored"]:
        return f"a bound ({optimum['censored']} the grid)"
    return f"not fitted ({optimum['fit']})"


def _constant(value: float) -> str:
    """``4`` or ``1/4``: a constant as a researcher writes it."""
    if value < 1 and (1 / value).is_integer():
        return f"1/{int(1 / value)}"
    return f"{value:g}"


def lr_constant_settings(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` (runs, optima or drifts) with its LR-constant columns' nulls (a constant
    left at 1, not recorded) filled with 1 and a ``setting`` column naming the constants
    that differ from 1 (``lr_output = 4``; ``every constant 1`` for none)."""
    constants = [c for c in LR_CONSTANTS.values() if c in frame.columns]
    if not constants:
        raise InputError(
            f"the frame has no LR constant column ({', '.join(LR_CONSTANTS.values())}): "
            "nothing varies a per-layer constant"
        )
    filled = frame.with_columns(pl.col(c).cast(pl.Float64).fill_null(1.0) for c in constants)
    labels = [
        ", ".join(f"{c} = {_constant(row[c])}" for c in constants if row[c] != 1.0)
        or "every constant 1"
        for row in filled.select(constants).iter_rows(named=True)
    ]
    return filled.with_columns(setting=pl.Series(labels, dtype=pl.String))


def lr_constants(runs: pl.DataFrame, *, axis: str = "width") -> str:
    """Which per-layer LR constant (:data:`~toolkit.engine.rules.LR_CONSTANTS`) flattens the
    drift of the optimal learning rate, and which moves the optimum.

    ``runs`` holds one baseline (every constant 1; a null is a constant left at 1) and
    settings that change constants. One bullet per setting: the drift with its interval
    (:func:`drift_sentence`), its change from the baseline's, and how far the optimum at
    the smallest size moves from the baseline's, each with a 95% interval (the two
    estimates' intervals combined in quadrature). Then the verdict: the settings whose
    drift is nearer 0 than the baseline's by more than the change's interval flatten it;
    if none does, it says so. An optimum at the grid's edge is a bound and is named as
    such, never differenced.
    """
    runs = lr_constant_settings(runs)
    constants = [c for c in LR_CONSTANTS.values() if c in runs.columns]
    optima = lr_constant_settings(optimal_lr(runs))
    drifts = lr_constant_settings(drift(optima, axis=axis))
    is_base = pl.all_horizontal(pl.col(c) == 1.0 for c in constants)
    baseline = drifts.filter(is_base)
    if baseline.height != 1:
        raise InputError(
            f"runs hold {baseline.height} settings with every LR constant at 1; the "
            "comparison needs exactly one baseline"
        )
    base = baseline.row(0, named=True)
    smallest = optima[axis].min()
    first = optima.filter(pl.col(axis) == smallest)
    base_opt = first.filter(is_base).row(0, named=True)
    lines = [f"- **{base['setting']}** (baseline): {drift_sentence(base)}."]
    flattening, moves = [], []
    settings = drifts.filter(~is_base).iter_rows(named=True)
    ordered_ = sorted(settings, key=lambda row: [(row[c] == 1.0, row[c]) for c in constants])
    for row in ordered_:  # input before hidden before output, smaller constants first
        varied, label = [c for c in constants if row[c] != 1.0], row["setting"]
        change = difference(row["slope"], row["slope_lo"], row["slope_hi"],
                             base["slope"], base["slope_lo"], base["slope_hi"])  # fmt: skip
        text = f"- **{label}**: {drift_sentence(row)}"
        if change is None:
            text += "; its change from the baseline cannot be measured"
        else:
            text += (f", {_octaves(change[0])} per doubling from the baseline's "
                     f"([{change[1]:+.2f}, {change[2]:+.2f}])")  # fmt: skip
            if abs(row["slope"]) < abs(base["slope"]) and not change[1] <= 0 <= change[2]:
                flattening.append(label)
        mine = first.filter(*(pl.col(c) == row[c] for c in constants)).row(0, named=True)
        shift = None
        if mine["measured"] and base_opt["measured"]:
            shift = difference(mine["log2_lr_opt"], mine["log2_lr_lo"], mine["log2_lr_hi"],
                                base_opt["log2_lr_opt"], base_opt["log2_lr_lo"],
                                base_opt["log2_lr_hi"])  # fmt: skip
        if shift is None:
            unmeasured = base_opt if mine["measured"] else mine
            what = "the baseline's" if mine["measured"] else "its"
            text += (f"; at {axis} {smallest} {what} optimum is {_unmeasured(unmeasured)}, so "
                     "the optimum's move is not measured.")  # fmt: skip
        else:
            text += (f"; at {axis} {smallest} the optimum moves by {_octaves(shift[0])} "
                     f"([{shift[1]:+.2f}, {shift[2]:+.2f}]; "
                     f"{_octaves(-math.log2(row[varied[0]]))} if that layer's LR alone set "
                     "it).")  # fmt: skip
            moves.append((abs(shift[0]) / abs(math.log2(row[varied[0]])), label, shift))
        lines.append(text)
    if flattening:
        verdict = (f"**{' and '.join(flattening)} flatten{'s' if len(flattening) == 1 else ''} "
                   "the drift**: nearer 0 than the baseline's by more than the change's "
                   "interval.")  # fmt: skip
    else:
        verdict = ("**None of the constants flattens the drift**: no setting's drift is nearer "
                   "0 than the baseline's by more than the change's interval.")  # fmt: skip
    if moves:
        share, label, shift = max(moves)
        verdict += (f" The optimum moves most with **{label}**: {_octaves(shift[0])} at "
                    f"{axis} {smallest}, {share:.0%} of the constant's own octaves.")  # fmt: skip
    return "\n".join(lines) + "\n\n" + verdict


#: Tensor Programs V (Yang et al. 2021, Sec. 1 and Figs. 1, 3, 4): whether the optimum of
#: every hyperparameter stays put across width under each parametrization.
TRANSFERS = {"mup": True, "sp": False}


def _optimum_phrase(row: dict, log2_x: str, lowest: float, highest: float) -> str:
    """Where one optimum lies: measured with its interval (and a warning where the two
    disagree, :func:`~toolkit.analysis.optima.grid_disagreement`), or a bound, or
    unmeasured."""
    if row["fit"] == "ok":
        lo, hi, best = row[f"{log2_x}_lo"], row[f"{log2_x}_hi"], row[f"{log2_x}_grid"]
        text = f"{two_to(row[f'{log2_x}_opt'])} (95% interval [{lo:.2f}, {hi:.2f}] in log2"
        if row["off_grid"]:
            text += (f"; it disagrees with the best grid value, {two_to(best)}: the loss is not "
                     "locally quadratic there, or noise moved the grid minimum, and the interval "
                     "understates the uncertainty")  # fmt: skip
        return text + ")"
    best = row[f"{log2_x}_grid"]
    if best is None:
        return "nowhere (every value diverged)"
    if row["censored"] is not None or best in (lowest, highest):
        side = row["censored"] or ("below" if best == lowest else "above")
        return f"{side} the grid (best at its edge, {two_to(best)}: a bound, not a measurement)"
    return f"unmeasured (fit: {row['fit']}; best grid value {two_to(best)})"


def _verdict(x: str, rows: list[dict]) -> str:
    """Whether each series' drift matches what Tensor Programs V predicts for it."""
    misses, checked = [], []
    for row in rows:
        predicted = TRANSFERS.get(row["parametrization"])
        if predicted is None:
            continue
        name = PARAMETRIZATION_NAMES.get(row["parametrization"], row["parametrization"])
        if row["slope"] is None:
            misses.append(f"{name}'s drift cannot be fitted")
            continue
        stays = row["slope_lo"] <= 0 <= row["slope_hi"]
        checked.append(name)
        if stays != predicted:
            moved = (
                "stays put (its interval contains 0)"
                if stays
                else "moves (its interval excludes 0)"
            )
            misses.append(f"{name}'s optimum {moved}, {_octaves(row['slope'])} per doubling")
    if not checked and not misses:
        return ""
    if misses:
        return f"Tensor Programs V's claim does **not** hold here for {x}: {'; '.join(misses)}."
    return (f"Tensor Programs V's claim **holds** here for {x}: muP's drift interval contains 0 "
            "and SP's excludes it.")  # fmt: skip


def hyperparameter_transfer(
    runs: pl.DataFrame, hyperparameters: tuple[str, ...], *, axis: str = "width"
) -> str:
    """Per swept hyperparameter (where it is swept, the others held) and series: its
    optimum at the smallest and the largest size (with intervals, or named as a bound),
    the fitted drift of ``log2`` of the optimum with its interval, what the value tuned
    at the smallest size costs at the largest, and whether that matches Tensor Programs
    V's claim (:data:`TRANSFERS`: muP's optimum stays put, SP's moves)."""
    paragraphs = []
    for x in hyperparameters:
        mine = swept(runs, x)
        if mine.height == 0:
            paragraphs.append(f"**{x}** is not swept in these runs: it has no optimum to find.")
            continue
        log2_x = f"log2_{x}"
        optima = grid_disagreement(optimal_hyperparameter(mine, x), hyperparameter_curves(mine, x))
        drifts = drift(optima, axis=axis)
        regret = transfer_regret(mine, axis=axis, x=x)
        keys = [k for k in config_keys(drifts, x=x) if k != axis]
        varying = [k for k in keys if drifts[k].n_unique() > 1] or keys[:1]
        rank = [pl.col(k).replace_strict({v: i for i, v in enumerate(ordered(drifts, k))},
                                         default=None) for k in varying]  # fmt: skip
        lines, rows = [], list(drifts.sort(rank, nulls_last=True).iter_rows(named=True))
        for row in rows:
            same = [pl.col(k).eq_missing(row[k]) for k in keys]
            series = optima.filter(*same).sort(axis)
            grid = mine.filter(*same)[x].log(2)
            lowest, highest = float(grid.min()), float(grid.max())
            first, last = series.row(0, named=True), series.row(-1, named=True)
            cost = regret.filter(*same, pl.col(axis) == last[axis])["regret"]
            lines.append(
                f"- **{_label(row, varying)}**: the optimal {x} is "
                f"{_optimum_phrase(first, log2_x, lowest, highest)} at {axis} {first[axis]} and "
                f"{_optimum_phrase(last, log2_x, lowest, highest)} at {axis} {last[axis]}; "
                f"{drift_sentence(row)}; the {x} tuned at {axis} {first[axis]} costs "
                f"{cost[0]:.3f} in loss at {axis} {last[axis]}."
            )
        span = mine[x].log(2)
        head = f"**{x}** (grid 2^{span.min():g} to 2^{span.max():g}):"
        verdict = _verdict(x, rows)
        if off := optima.filter(pl.col("off_grid")).height:
            verdict += (f" {off} of the {optima.height} fitted optima of {x} disagree with their "
                        "best grid value, so the drift intervals through them may be too "
                        "narrow.")  # fmt: skip
        paragraphs.append("\n".join([head, *lines, "", verdict]))
    return "\n\n".join(paragraphs)


#: Bjorck et al. 2024, *Scaling Optimal LR Across Token Horizons* (ICLR 2025; abstract and
#: Fig. 1): the optimal LR of an LLM falls as the token horizon grows, as a power law in the
#: number of training tokens. At a fixed batch size the tokens are proportional to the
#: steps, so the same law in steps has the same exponent.
HORIZON_SOURCE = "Bjorck et al. 2024"


def _power_law_sentence(row: dict) -> str:
    """The fitted ``lr* ∝ steps**-alpha`` of one series, with its interval, how it was
    fitted and how many optima were left out of the fit as bounds."""
    if row["alpha"] is None:
        measured = "1 optimum is" if row["points"] == 1 else f"{row['points']} optima are"
        return (f"No power law can be fitted: only {measured} measured "
                f"({row['censored']} censored at the grid's edge).")  # fmt: skip
    weights = ("each weighted by its own standard error plus any scatter between them "
               "(random-effects meta-regression)" if row["method"] == META_REGRESSION
               else "unweighted least squares")  # fmt: skip
    text = (f"Fitted power law `lr* ∝ steps^-alpha`: **alpha = {row['alpha']:.2f}** (95% "
            f"interval [{row['alpha_lo']:.2f}, {row['alpha_hi']:.2f}]; a line of log2 lr* "
            f"against log2 steps through the {row['points']} measured optima, {weights}); "
            f"{row['censored']} optima censored at the grid's edge")  # fmt: skip
    if row["contradicting"]:
        text += f", {row['contradicting']} of them contradicting the line"
    return text + "."


def _horizon_verdict(row: dict) -> str:
    """How one series' ``alpha`` compares with the published token-horizon law."""
    if row["alpha"] is None:
        return f"The data cannot say whether the optimal LR falls, as {HORIZON_SOURCE} find."
    if row["alpha_lo"] > 0:
        return (f"The optimal LR **falls** with the horizon, each doubling of the steps "
                f"dividing it by about {2 ** row['alpha']:.2f}, as {HORIZON_SOURCE} find for "
                "language models (a power law in the number of training tokens). Their "
                "exponents are fitted to LLMs trained on billions of tokens, so this small "
                "MLP's alpha is compared with the law's form, not with their value.")  # fmt: skip
    if row["alpha_hi"] < 0:
        return (f"The optimal LR **rises** with the horizon here, unlike the fall "
                f"{HORIZON_SOURCE} find.")  # fmt: skip
    return (f"The interval contains 0: these horizons cannot tell whether the optimal LR "
            f"falls, as {HORIZON_SOURCE} find.")  # fmt: skip


def horizon(runs: pl.DataFrame) -> str:
    """What a horizon study shows, per series (the settings that differ between series name
    it): each horizon's optimal learning rate (measured, with its 95% interval, or named as
    a bound), the power law ``lr* ∝ steps**-alpha`` through the measured optima
    (:func:`~toolkit.analysis.transfer.power_law_exponent`) with its interval, method and
    censored optima, what the LR tuned at the shortest horizon costs in loss at the longest,
    and how that compares with the token-horizon law (:data:`HORIZON_SOURCE`)."""
    optima = grid_disagreement(optimal_lr(runs), lr_curves(runs))
    laws = power_law_exponent(optima, axis="steps")
    regret = transfer_regret(runs, axis="steps")
    keys = [k for k in CONFIG_KEYS if k in laws.columns and k != "steps"]
    named = [k for k in ("parametrization", "optimizer") if k in keys] or keys[:1]
    varying = [k for k in keys if laws[k].n_unique() > 1] or named
    paragraphs = []
    for row in laws.iter_rows(named=True):
        same = [pl.col(k).eq_missing(row[k]) for k in keys]
        series = optima.filter(*same).sort("steps")
        grid = runs.filter(*same)["lr"].log(2)
        lowest, highest = float(grid.min()), float(grid.max())
        bullets = [
            f"- {at['steps']} steps: {_optimum_phrase(at, 'log2_lr', lowest, highest)}"
            for at in series.iter_rows(named=True)
        ]
        first, last = series["steps"][0], series["steps"][-1]
        cost = regret.filter(*same, pl.col("steps") == last)["regret"][0]
        closing = (f"{_power_law_sentence(row)} {_horizon_verdict(row)} The LR tuned at {first} "
                   f"steps costs {cost:.3f} in training loss at {last} steps.")  # fmt: skip
        head = (f"**{_label(row, varying)}**, optimal learning rate by horizon "
                f"(grid 2^{lowest:g} to 2^{highest:g}):")  # fmt: skip
        paragraphs.append("\n".join([head, *bullets, "", closing]))
    return "\n\n".join(paragraphs)
