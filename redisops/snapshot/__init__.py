"""Incident snapshots: a fleet's evidence captured in one redacted archive, read back, compared."""
