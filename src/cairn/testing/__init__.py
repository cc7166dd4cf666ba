"""Contract test suites that every implementation of a cairn port must pass."""
