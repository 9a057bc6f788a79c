"""Offline analysis: a streaming reader of RDB files (versions 1 to 12) and the memory report
built from it, so a memory investigation can read last night's backup instead of production."""
