"""Studies: search spaces and how a population of settings is spent (host side)."""
