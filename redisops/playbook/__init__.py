"""Playbooks: YAML runbooks whose steps are redisops commands, run in-process."""
