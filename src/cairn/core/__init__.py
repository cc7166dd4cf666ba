"""The pure domain of cairn: definitions, graphs, fingerprints, cache keys and plans (standard library only)."""
