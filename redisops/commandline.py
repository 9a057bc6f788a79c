"""How this run was invoked, so the command lines redisops prints can be pasted as they are.

A fix line such as `redisops -l cache-1 config apply --set …` fails when pasted if the run was
given `-i staging.yaml` and the line leaves it out. The CLI builds one `CommandLine` from the
global options and passes it to whatever prints such lines. Imports nothing from redisops.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass


@dataclass(frozen=True)
class CommandLine:
    """The global options a printed command line must repeat: the inventory given (with -i
    or $REDISOPS_INVENTORY; None for ./inventory.yaml) and the --limit given."""

    inventory: str | None = None
    limit: str | None = None

    def redisops(self, *words: str, limit: bool = True) -> str:
        """`redisops -i INVENTORY [-l LIMIT] words…`, shell-quoted; `limit=False` leaves this
        run's --limit out (the words name their own hosts)."""
        line = ["redisops"]
        if self.inventory:
            line += ["-i", self.inventory]
        if limit and self.limit:
            line += ["-l", self.limit]
        return shlex.join([*line, *words])

    def with_inventory(self, text: str) -> str:
        """`text` with this run's inventory put into each `redisops …` it quotes in backticks
        (hints written deep in the core, where the invocation is not known)."""
        if not self.inventory:
            return text
        return text.replace("`redisops ", f"`{self.redisops(limit=False)} ")
