"""The RDB format, shared by backup (checks what it stores) and memory (reports on a file):
the header's magic and version (Redis 1 to 12, Valkey's 80), opcodes, CRC64, LZF, the packed
encodings (listpack, ziplist, intset, zipmap) and a streaming reader of the records."""
