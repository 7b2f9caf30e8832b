"""Admin HTTP API and dashboard: job history, actions, statistics, health and metrics."""
