"""Ingest: reading each pipeline source for a partition's window, Great Expectations validation, and
the raw assets with their blocking checks."""
