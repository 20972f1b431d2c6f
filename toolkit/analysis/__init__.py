"""Analysis of stored results: polars frames in, polars frames out; no torch, no plots."""
