"""A local sandbox fleet (master, replicas, sentinels) for trying redisops and for tests."""

from redisops.lab.sandbox import LabProcess, LabState, lab_down, lab_status, lab_up

__all__ = ["LabProcess", "LabState", "lab_down", "lab_status", "lab_up"]
