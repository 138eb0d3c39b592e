"""sked: a Kubernetes operator that runs cron-scheduled Pods with retries, history and metrics."""

__version__ = "0.1.0"
