"""Benchmarks: ``python -m bench`` runs the suite (see ``bench/run.py``)."""
