"""Slowlog triage: collection across the fleet, command fingerprints, the digest, cron state."""
