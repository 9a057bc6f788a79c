"""Secrets out of a snapshot before it reaches disk.

Three passes, each where the secret's shape is known, then one by value:
- CONFIG GET *: secret settings (under every alias, decided on the canonical name) become
  (set)/(unset), and their values are remembered;
- SLOWLOG arguments: the credentials of AUTH, HELLO … AUTH, MIGRATE … AUTH/AUTH2, CONFIG SET
  and ACL SETUSER (slowlog/fingerprint.py decides which positions) become "(redacted)";
- ACL LIST: password rules `>pass` `<pass` and hash rules `#hash` `!hash` lose their value;
- then every string of every item has each remembered secret (the inventory's passwords and
  the secret settings read from any host) replaced by "***", so a password that turns up
  elsewhere (a log line, a client name, another host's config) is caught too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from redisops.redaction import REDACTED
from redisops.slowlog.fingerprint import REDACTED as REDACTED_ARG
from redisops.slowlog.fingerprint import secret_positions
from redisops.tuning.settings import SECRET_SETTINGS, canonical, masked

# Secret settings whose value is a credential (the others, masteruser, are user names).
_CREDENTIALS = frozenset(name for name in SECRET_SETTINGS if name.endswith(("pass", "auth")))
_ACL_SECRET_RULES = (">", "<", "#", "!")
# Shorter "secrets" would blank ordinary words (fleet/secrets.py remembers from 4 on too).
MIN_SECRET = 4


def mask_config(config: Mapping[str, str]) -> tuple[dict[str, str], set[str]]:
    """CONFIG GET * with secret values as (set)/(unset), and the credential values it held."""
    found = {
        value
        for name, value in config.items()
        if canonical(name) in _CREDENTIALS and len(value) >= MIN_SECRET
    }
    return {name: masked(name, value) or "" for name, value in config.items()}, found


def mask_args(args: Sequence[bytes]) -> list[str]:
    """A slowlog entry's arguments as text (surrogate escapes keep any byte), with the
    credential positions replaced."""
    secret = secret_positions(args)
    return [
        REDACTED_ARG if index in secret else arg.decode("utf-8", "surrogateescape")
        for index, arg in enumerate(args)
    ]


def mask_acl_rule_line(line: str) -> str:
    """An ACL LIST line with password and hash rules reduced to their first character."""
    return " ".join(
        f"{word[0]}{REDACTED}" if word.startswith(_ACL_SECRET_RULES) and len(word) > 1 else word
        for word in line.split(" ")
    )


def scrub(value: Any, secrets: Iterable[str]) -> Any:
    """`value` (str, or lists/dicts of them, as items hold) with every secret replaced."""
    ordered = sorted({s for s in secrets if len(s) >= MIN_SECRET}, key=len, reverse=True)
    if not ordered:
        return value
    return _scrub(value, ordered)


def _scrub(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, str):
        for secret in secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, list | tuple):
        return [_scrub(item, secrets) for item in value]
    if isinstance(value, dict):
        return {_scrub(k, secrets): _scrub(v, secrets) for k, v in value.items()}
    return value
