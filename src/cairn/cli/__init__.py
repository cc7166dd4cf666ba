"""The `cairn` command line: one module per command group, each thin (parse → call the API → render)."""
