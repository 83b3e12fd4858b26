"""Benchmarks: `python -m bench.ingest` (ingestion against psql's \\copy) and `python -m bench.scale`."""
