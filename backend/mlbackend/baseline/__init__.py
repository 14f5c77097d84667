"""Build baselines: where the compile runs (a container image, zig, or the host)."""
