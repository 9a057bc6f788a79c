"""redisops: an operations CLI for Redis fleets."""

__version__ = "0.1.0"
