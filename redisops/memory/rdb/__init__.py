"""Offline analysis: a streaming reader of RDB files (Redis's versions 1 to 12, Valkey's format
80) and the memory report built from it, so a memory investigation can read last night's
backup instead of production."""
