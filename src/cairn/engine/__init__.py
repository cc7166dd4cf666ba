"""The engine: one scheduling loop that plans, submits step jobs, and records every result."""
