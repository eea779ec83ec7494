"""The results store: the Parquet tables and their schema (`store`) and a computed run
with its provenance (`runs`: `SweepResult`, `compute_run`)."""
