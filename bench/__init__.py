"""Benchmarks of runbook-tui against script(1) and asciinema (issue 6): `python -m bench --help`."""
