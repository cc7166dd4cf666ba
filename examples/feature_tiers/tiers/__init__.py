"""The tiers of the feature pipeline, one module each; `DAYS` is the calendar they all share."""

from cairn import daily

# The days of the example (end is exclusive). generate.py lands files for exactly these days.
DAYS = daily("2026-06-01", end="2026-06-15")
