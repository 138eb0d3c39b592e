"""Benchmarks of sked against Kubernetes' CronJob controller on the same local API server.

``python -m bench quick`` runs the short forms, ``python -m bench all`` every benchmark;
docs/benchmarks.md describes them and records the results.
"""
