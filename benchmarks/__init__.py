"""warngate benchmarks: `python -m benchmarks [--quick] [--only NAME]` (docs/benchmarks.md)."""
