"""Sentinel: the topology the sentinels see, failover drills, and the probe that times them."""

# Bytes a replica may be behind its master before it is a problem (and cannot be the one a
# drill counts on); here so that the CLI's option default costs no import of the modules.
DEFAULT_MAX_LAG = 1024 * 1024
