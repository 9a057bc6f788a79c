"""Backups: capture (RDB and AOF), the catalogue, verification, retention and restore."""
