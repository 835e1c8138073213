"""One small module per CLI command; each defines a function that `prunectl.cli` registers."""
