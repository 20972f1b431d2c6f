"""Spectral analysis recovers known exponents and densities; a sweep with the spectra probe
writes a resumable store and flat records; plots and the spectra explorer draw every view."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
import pytest  # noqa: E402

from toolkit.analysis import spectra as spectral_analysis  # noqa: E402
from toolkit.engine.probes import log_spaced_steps  # noqa: E402
from toolkit.store import Store  # noqa: E402
from toolkit.studies.sweep import SweepSpec, probe_records, run_local  # noqa: E402
from toolkit.ui import plots
from toolkit.ui.cli import main  # noqa: E402
from toolkit.ui.widgets import SPECTRA_VIEWS, StudyData, spectra_explorer  # noqa: E402

SPEC = SweepSpec(
    study="spectra",
    task="digits",
    parametrizations=("sp", "mup"),
    widths=(16, 64),
    depths=(2,),
    lrs=(0.01,),
    seeds=2,
    steps=(6,),
    eval_every=6,
    base_width=16,
    probes=("spectra",),
)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    path = tmp_path_factory.mktemp("spectra")
    run_local(SPEC, path, quiet=True)
    return path


@pytest.fixture(scope="module")
def probes(study):
    store = Store(study)
    return spectral_analysis.with_settings(store.probes().collect(), store.runs().collect())


def test_the_study_store_resumes_and_records_at_log_spaced_steps(study, probes):
    assert run_local(SPEC, study, quiet=True).runs == 0
    assert sorted(probes["step"].unique()) == log_spaced_steps(6)
    assert probes["run_id"].n_unique() == SPEC.size == 8
    stats = set(probes["stat"])
    assert {"sigma_max", "cond_ratio", "update_cond_ratio", "act_rms", "sv_1"} <= stats
    assert spectral_analysis.layer_order(probes) == ["input", "hidden1", "readout"]


def test_singular_values_read_back_with_ranks_and_counts(probes):
    spectra = spectral_analysis.singular_value_frame(probes)
    hidden = spectra.filter(pl.col("layer") == "hidden1", pl.col("width") == 64)
    assert hidden["n"].unique().to_list() == [64]
    firsts = hidden.group_by("run_id", "step").agg(pl.col("rank").min())["rank"]
    assert firsts.unique().to_list() == [1]
    first = hidden.filter(pl.col("rank") == 1)
    sigma_max = probes.filter(pl.col("layer") == "hidden1", pl.col("width") == 64,
                              pl.col("stat") == "sigma_max")  # fmt: skip
    joined = first.join(sigma_max, on=["run_id", "step"])
    assert joined["sigma"].to_list() == pytest.approx(joined["value"].to_list())


def test_esd_density_of_a_full_spectrum_integrates_to_its_covered_fraction():
    eigenvalues = np.sort(np.random.default_rng(0).pareto(2.0, 100) + 1.0)[::-1]
    spectra = pl.DataFrame({"run_id": "a", "step": 0, "layer": "hidden1",
                            "rank": np.arange(1, 101), "eigenvalue": eigenvalues,
                            "n": 100})  # fmt: skip
    spectra = spectra.with_columns(sigma=pl.col("eigenvalue").sqrt())
    density = spectral_analysis.esd_density(spectra, min_count=1)
    assert density["fraction"].sum() == pytest.approx(0.99)
    widths = -np.diff(eigenvalues)
    assert (density["density"].to_numpy() * widths) == pytest.approx(np.full(99, 0.01))
    merged = spectral_analysis.esd_density(spectra, min_count=4)
    assert merged["fraction"].sum() == pytest.approx(0.99)
    assert (merged["fraction"][:-1] == 0.04).all() and merged.height == 25
    assert merged.select("run_id", "step", "layer").unique().rows() == [("a", 0, "hidden1")]


def _synthetic(exponents: dict[str, float], widths=(64, 128, 256, 512)) -> pl.DataFrame:
    rng = np.random.default_rng(1)
    rows = [
        {"parametrization": p, "width": w, "seed": s, "step": 10, "layer": "hidden1",
         "role": "hidden", "stat": "sigma_max",
         "value": 3.0 * w**k * float(np.exp(0.01 * rng.standard_normal()))}
        for p, k in exponents.items() for w in widths for s in range(2)
    ]  # fmt: skip
    return pl.DataFrame(rows)


def test_fit_exponent_recovers_power_laws_with_intervals():
    fits = spectral_analysis.fit_exponent(_synthetic({"sp": 0.5, "mup": 0.0})).sort(
        "parametrization"
    )
    assert fits["parametrization"].to_list() == ["mup", "sp"]
    assert fits["exponent"].to_list() == pytest.approx([0.0, 0.5], abs=0.02)
    assert (fits["exponent_lo"] < fits["exponent"]).all()
    assert (fits["exponent"] < fits["exponent_hi"]).all()
    assert fits["fit"].to_list() == ["ok", "ok"]
    assert fits["intercept"].to_list() == pytest.approx([np.log2(3.0)] * 2, abs=0.1)
    two = spectral_analysis.fit_exponent(_synthetic({"sp": 0.5}, widths=(64, 128)))
    one = spectral_analysis.fit_exponent(_synthetic({"sp": 0.5}, widths=(64,)))
    assert two["fit"].to_list() == ["ok"]  # two seeds per width leave residual freedom
    assert one["fit"].to_list() == ["too-few-points"] and np.isnan(one["exponent"][0])


def test_lr_wd_exponent_is_one_when_sigma_scales_like_sqrt_lr_over_wd():
    rows = [
        {"weight_decay_scaling": "sqrt_width", "width": 64, "step": 5, "layer": "hidden1",
         "role": "hidden", "stat": "sigma_max", "lr": lr, "weight_decay": wd,
         "value": 2.0 * (lr / wd) ** 0.5 if wd else 50.0}
        for lr in (1e-3, 4e-3, 1.6e-2) for wd in (0.0, 0.1, 1.0)
    ]  # fmt: skip
    fit = spectral_analysis.lr_wd_exponent(pl.DataFrame(rows))
    assert fit["exponent"].to_list() == pytest.approx([1.0])
    assert fit["points"].to_list() == [6]  # wd = 0 runs are left out


def test_width_table_relates_every_width_to_the_smallest_in_layer_order(probes):
    table = spectral_analysis.width_table(probes, stat="cond_ratio")
    assert table["step"].unique().to_list() == [6]
    assert table.filter(pl.col("width") == 16)["ratio"].to_list() == pytest.approx([1.0] * 6)
    layers = table.filter(pl.col("parametrization") == "mup")["layer"].to_list()
    assert layers == ["input", "input", "hidden1", "hidden1", "readout", "readout"]
    with pytest.raises(ValueError, match="stat='loss'"):
        spectral_analysis.width_table(probes, stat="loss")


def test_layers_are_ordered_by_role_then_number():
    frame = pl.DataFrame({"layer": ["readout", "block10.fc1", "block2.fc1", "embed"],
                          "role": ["output", "hidden", "hidden", "input"]})  # fmt: skip
    assert spectral_analysis.layer_order(frame) == ["embed", "block2.fc1", "block10.fc1",
                                                    "readout"]  # fmt: skip


def test_weight_decay_rules_report_sigma_exponent_and_optimum_drift():
    """A synthetic study where the rule ``flat`` keeps sigma_max width-independent and
    ``grows`` makes it grow like width**0.25; both have their optimum at (lr, wd) = (2, 1)."""
    runs, probes = [], []
    for rule, k in (("flat", 0.0), ("grows", 0.25)):
        for width in (64, 128, 256):
            for lr in (1.0, 2.0, 4.0):
                for wd in (0.5, 1.0):
                    rid = f"{rule}-{width}-{lr}-{wd}"
                    loss = (np.log2(lr) - 1) ** 2 + (np.log2(wd)) ** 2 + 1.0 / width
                    runs.append({"run_id": rid, "parametrization": "mup", "optimizer": "adamw",
                                 "weight_decay_scaling": rule, "width": width, "lr": lr,
                                 "weight_decay": wd, "status": "ok",
                                 "final_train_loss": loss})  # fmt: skip
                    for layer in ("hidden1", "hidden2"):
                        probes.append({**runs[-1], "steps": 10, "step": 10, "layer": layer,
                                       "role": "hidden", "stat": "sigma_max",
                                       "value": np.sqrt(lr / wd) * width**k})  # fmt: skip
    table = spectral_analysis.weight_decay_rules(pl.DataFrame(runs), pl.DataFrame(probes))
    table = table.sort("weight_decay_scaling")
    assert table["weight_decay_scaling"].to_list() == ["flat", "grows"]
    assert table["sigma_exponent"].to_list() == pytest.approx([0.0, 0.25], abs=1e-9)
    assert table["lr"].to_list() == [2.0, 2.0] and table["weight_decay"].to_list() == [1.0, 1.0]
    assert table["lr_drift"].to_list() == pytest.approx([0.0, 0.0], abs=1e-9)
    assert table["widths"].to_list() == [3, 3]


def test_probe_records_are_flat_rows_with_each_runs_settings():
    spec = SPEC.with_(parametrizations=("mup",), seeds=1, widths=(16,), probe_points=3)
    records = probe_records(spec).to_dicts()
    assert {"width", "depth", "parametrization", "optimizer", "lr", "weight_decay", "seed",
            "layer", "role", "step", "stat", "value"} <= set(records[0])  # fmt: skip
    stats = {r["stat"] for r in records}
    assert {"sigma_max", "stable_rank", "fro_norm", "cond_ratio", "delta_cond_ratio",
            "update_cond_ratio", "update_ratio", "act_rms"} <= stats  # fmt: skip
    assert {r["step"] for r in records} == set(log_spaced_steps(6, 3))


def test_a_bad_probe_setting_is_refused_with_one_line(tmp_path, capsys):
    assert main(["sweep", "--out", str(tmp_path / "s"), "--spec", str(tmp_path / "x.toml")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: spec=") and "\n" not in err
    assert main(["sweep", "--out", str(tmp_path / "s"), "--probe-points", "0"]) == 2
    assert "probe_points=0" in capsys.readouterr().err


def test_spectra_plots_draw_one_line_or_panel_per_value(probes):
    spectra = spectral_analysis.mean_spectrum(spectral_analysis.singular_value_frame(probes))
    density = spectral_analysis.esd_density(
        spectra.filter(pl.col("layer") == "hidden1", pl.col("step") == 6)
    )
    fig = plots.esd_plot(density, hue="width", col="parametrization")
    assert len(fig.axes) == 2 and all(len(ax.lines) == 2 for ax in fig.axes)
    last = probes.filter(pl.col("layer") == "hidden1", pl.col("step") == 6)
    fits = spectral_analysis.fit_exponent(last)
    points = spectral_analysis.seed_mean(last).filter(pl.col("stat") == "sigma_max")
    fig = plots.exponent_plot(points, fits)
    labels = [t.get_text() for t in fig.axes[0].get_legend().texts]
    assert len(labels) == 2 and all(": k = " in label for label in labels)
    table = spectral_analysis.width_table(probes, stat="cond_ratio")
    fig = plots.ratio_heatmaps(table, fig=fig)
    assert len(fig.axes) == 3  # two panels and a colour bar
    assert len(fig.axes[0].texts) == 3 * 2  # layers x widths, annotated


def test_spectra_explorer_draws_every_view(study):
    explorer = spectra_explorer(StudyData(study))
    assert explorer.controls["view"].value == SPECTRA_VIEWS[0]
    assert explorer.controls["layer"].value == "hidden1"
    for view in (*SPECTRA_VIEWS[1:], SPECTRA_VIEWS[0]):
        before = explorer.image.value
        explorer.controls["view"].value = view
        assert not explorer.message, (view, explorer.message)
        assert explorer.image.value and explorer.image.value != before
    explorer.controls["step"].value = 0
    explorer.controls["stat"].value = "sigma_max"
    assert not explorer.message
    with pytest.raises(ValueError, match="study='other'"):
        spectra_explorer(StudyData(study), study="other")
