"""The store and report verbs say what a store holds and exit 1 when it has problems."""

from __future__ import annotations

import json

import polars as pl

from toolkit.store import SCHEMAS, Records, Store
from toolkit.ui.cli import main


def _records(run_ids: list[str], status: str = "ok") -> Records:
    n = len(run_ids)
    runs = pl.DataFrame({"run_id": run_ids, "status": [status] * n, "lr": [0.1] * n,
                         "final_train_loss": [None if status != "ok" else 1.0] * n},
                        schema_overrides={"final_train_loss": pl.Float64})  # fmt: skip
    return Records(runs, pl.DataFrame(schema=SCHEMAS["curves"]),
                   pl.DataFrame(schema=SCHEMAS["probes"]))  # fmt: skip


def test_store_lists_duplicates_exits_1_and_dedupe_repairs(tmp_path, capsys):
    store = Store(tmp_path)
    store.write_group("g1", _records(["a", "b"]))
    store.write_group("g2", _records(["b", "c"]))
    assert main(["store", str(tmp_path)]) == 1
    assert "duplicate: run b again in group g2" in capsys.readouterr().out
    assert main(["store", str(tmp_path), "--dedupe", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["removed"] == 1
    assert main(["store", str(tmp_path)]) == 0
    assert "every byte matches its checksum" in capsys.readouterr().out


def test_store_exits_1_on_a_damaged_file_until_quarantined(tmp_path, capsys):
    store = Store(tmp_path)
    store.write_group("g1", _records(["a"]))
    victim = tmp_path / "runs" / "g1.parquet"
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 1
    victim.write_bytes(bytes(data))
    assert main(["store", str(tmp_path)]) == 1
    assert "damaged:" in capsys.readouterr().out
    assert main(["store", str(tmp_path), "--quarantine"]) == 0


def test_report_on_an_empty_or_all_diverged_store_says_so_in_one_line(tmp_path, capsys):
    Store(tmp_path / "empty")
    assert main(["report", str(tmp_path / "empty")]) == 0
    assert capsys.readouterr().out.strip().endswith(f"sweep --out {tmp_path / 'empty'}`")
    Store(tmp_path / "diverged").write_group("g", _records(["a", "b"], status="diverged"))
    assert main(["report", str(tmp_path / "diverged")]) == 0
    out = capsys.readouterr().out.strip()
    assert out.splitlines() == [out] and "2 diverged" in out and "no optimum" in out


def test_report_says_which_optima_left_the_grid_in_a_line_and_in_json(tmp_path, capsys):
    """SP's optimum falls below the LR grid at the two widest widths: the report names each
    as a bound, and the drift is fitted through the measured optima only."""
    import json

    import numpy as np

    from toolkit.store import SCHEMAS, Records, Store

    rng = np.random.default_rng(0)
    optima = {32: -7.0, 64: -8.0, 128: -9.0, 256: -13.0, 512: -14.0}
    runs = pl.DataFrame(
        {"run_id": f"w{w}-x{x}-s{s}", "parametrization": "sp", "optimizer": "adam", "width": w,
         "depth": 2, "lr": 2.0**x, "seed": s, "status": "ok",
         "final_train_loss": 0.5 + 0.05 * (x - x_opt) ** 2 + rng.normal(0, 0.01)}
        for w, x_opt in optima.items() for x in range(-12, -1) for s in range(2)
    )  # fmt: skip
    store = Store(tmp_path / "s")
    store.write_group("g", Records(runs, pl.DataFrame(schema=SCHEMAS["curves"]),
                                   pl.DataFrame(schema=SCHEMAS["probes"])))  # fmt: skip
    assert main(["report", str(store.path)]) == 0
    text = capsys.readouterr().out
    bounds = [line for line in text.splitlines() if "lies below the LR grid" in line]
    assert len(bounds) == 2 and all("a bound, not a measurement" in line for line in bounds)
    assert main(["report", str(store.path), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert sum("lies below the LR grid" in note for note in payload["notes"]) == 2
    (line,) = [d for d in payload["drift"] if d["parametrization"] == "sp"]
    assert line["points"] == 3 and line["censored"] == 2 and abs(line["slope"] + 1) < 0.15


def test_report_finds_the_optimum_of_every_swept_multiplier_and_names_its_bounds(tmp_path, capsys):
    """A store sweeping the output multiplier at one LR: the report fits its optimum per
    width with the drift, says in one line that the widest optimum lies above the grid,
    and says the LR was not swept instead of printing a table of unfitted LR optima."""
    import numpy as np

    rng = np.random.default_rng(1)
    optima = {32: 0.0, 64: 1.0, 128: 2.0, 256: 3.0, 512: 6.0}  # 512: above the 2^-4..2^4 grid
    runs = pl.DataFrame(
        {"run_id": f"w{w}-a{a}-s{s}", "parametrization": "mup", "optimizer": "adam",
         "width": w, "depth": 3, "lr": 2.0**-7, "init_sigma": 1.0, "output_alpha": 2.0**a,
         "weight_decay": 0.0, "seed": s, "status": "ok",
         "final_train_loss": 0.5 + 0.05 * (a - a_opt) ** 2 + rng.normal(0, 0.01)}
        for w, a_opt in optima.items() for a in range(-4, 5) for s in range(3)
    )  # fmt: skip
    store = Store(tmp_path / "s")
    store.write_group("g", Records(runs, pl.DataFrame(schema=SCHEMAS["curves"]),
                                   pl.DataFrame(schema=SCHEMAS["probes"])))  # fmt: skip
    assert main(["report", str(store.path)]) == 0
    text = capsys.readouterr().out
    assert "optimal output_alpha (log2, 95% interval" in text
    assert "drift of log2(output_alpha*) per doubling" in text
    assert "optimal learning rates" not in text
    assert "learning rate: one value (2^-7.00) in every run, not swept: no LR optimum" in text
    (bound,) = [line for line in text.splitlines() if "lies above its output_alpha grid" in line]
    assert bound.startswith("mup adam width 512 depth 3")
    assert "(best at its edge, 2^4.00); a bound, not a measurement: add larger values" in bound
    assert main(["report", str(store.path), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    found = payload["hyperparameters"]["output_alpha"]
    assert [row["censored"] for row in found["optima"]] == [None, None, None, None, "above"]
    (line,) = found["drift"]
    assert line["points"] == 4 and line["censored"] == 1 and abs(line["slope"] - 1) < 0.2
    assert payload["optima"] == [] and any("not swept" in note for note in payload["notes"])


def test_report_says_in_one_line_why_a_weight_decay_grid_holding_zero_has_no_optimum(
    tmp_path, capsys
):
    runs = pl.DataFrame(
        {"run_id": f"x{x}-wd{wd}", "parametrization": "mup", "optimizer": "adamw", "width": 64,
         "depth": 2, "lr": 2.0**x, "weight_decay": wd, "seed": 0, "status": "ok",
         "final_train_loss": 0.5 + 0.05 * (x + 7) ** 2 + wd}
        for x in range(-10, -3) for wd in (0.0, 0.1)
    )  # fmt: skip
    store = Store(tmp_path / "s")
    store.write_group("g", Records(runs, pl.DataFrame(schema=SCHEMAS["curves"]),
                                   pl.DataFrame(schema=SCHEMAS["probes"])))  # fmt: skip
    assert main(["report", str(store.path)]) == 0
    text = capsys.readouterr().out
    assert "optimal learning rates" in text
    (line,) = [line for line in text.splitlines() if line.startswith("weight_decay:")]
    assert line == ("weight_decay: its grid holds 0, which has no log2: no optimum of "
                    "weight_decay is fitted (sweep positive values to fit one)")  # fmt: skip
