"""The driver side of clipsweep: specs, Ray Tune sweeps, MLflow records and leaderboards (`trainers` never imports it)."""
