"""Turning specs into stored results: sweep specs, planning, executors, and the
studies that are not plain sweeps (coordinate check, intrinsic dimension)."""
