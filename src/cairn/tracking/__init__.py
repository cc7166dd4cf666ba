"""What is tracked about runs: their environment, metrics and metadata."""
