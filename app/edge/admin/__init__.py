"""The operator's side: the admin API, its authentication and the dashboard."""
