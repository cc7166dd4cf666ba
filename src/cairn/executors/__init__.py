"""Executors run step jobs (a picklable module-level function and its argument) and report outcomes."""
