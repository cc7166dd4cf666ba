"""Lineage over recorded materializations: upstream trees, downstream impact, run diffs, OpenLineage export.

This package reads records only (the metadata store, and object footers for cheap facets); it never runs
asset code. `cairn.engine.reproduce` and `cairn.engine.integrity` build on it.
"""
