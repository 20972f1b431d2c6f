"""What the command line prints: tables for people, strict JSON for programs."""

from __future__ import annotations

import json
import math
import sys

import polars as pl


def print_table(frame: pl.DataFrame) -> None:
    """Every row and column of ``frame`` as a text table on stdout."""
    with pl.Config(
        tbl_rows=-1,
        tbl_cols=-1,
        tbl_width_chars=160,
        tbl_hide_dataframe_shape=True,
        fmt_str_lengths=60,
        float_precision=4,
    ):
        print(frame)


def _json_safe(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def print_json(payload: object) -> None:
    """Strict JSON on stdout: NaN and infinities become null."""
    json.dump(_json_safe(payload), sys.stdout, default=str)
    sys.stdout.write("\n")
