"""Reports from the Parquet results: sensitivity statistics, figures, the static leaderboard."""
