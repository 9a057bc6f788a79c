"""`config audit`: every rule of `rules.RULES` against each selected host's facts."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from redisops.commandline import CommandLine
from redisops.fleet.fanout import HostResult, PartialFailure, run_on_hosts
from redisops.fleet.host import Host
from redisops.memory.summary import Severity
from redisops.tuning.facts import Facts, SystemFacts, collect_facts
from redisops.tuning.rules import RULES, AuditRule, Hit


@dataclass(frozen=True)
class Finding:
    """One rule that fired: the setting, its value now, the recommended one, why, and the fix.

    `value` is the value the fix sets (None when only the operator can choose it);
    `in_redis_config` is true when it is a Redis setting, so it belongs in `redis_config`.
    """

    rule: str
    severity: Severity
    setting: str
    current: str
    recommended: str
    why: str
    fix: str
    value: str | None
    in_redis_config: bool


@dataclass(frozen=True)
class FindingGroup:
    """The same finding (rule and values) on several hosts, shown once; `fix` covers them all."""

    finding: Finding
    hosts: tuple[str, ...]
    fix: str


@dataclass(frozen=True)
class Unchecked:
    """A rule that could not be judged, and why (an input was refused or out of reach)."""

    rule: str
    reason: str


@dataclass(frozen=True)
class HostAudit:
    """One host's findings, most severe first; `severity` is the worst (None: clean).

    `system` holds the machine facts read (None where unknown); `write_rate` is bytes per
    second of replication stream over the measuring window (None when not measured).
    """

    role: str
    version: str
    findings: tuple[Finding, ...]
    unchecked: tuple[Unchecked, ...]
    system: SystemFacts
    write_rate: float | None
    severity: Severity | None


@dataclass(frozen=True)
class FleetAudit:
    """Audits in inventory order, and the Sentinels left out."""

    results: tuple[HostResult[HostAudit], ...]
    skipped_sentinels: tuple[str, ...]

    def findings_by_severity(self) -> dict[str, int]:
        """How many findings of each severity, over all hosts."""
        counts = Counter(
            finding.severity
            for result in self.results
            if result.data is not None
            for finding in result.data.findings
        )
        return {severity.value: counts[severity] for severity in reversed(Severity)}

    def hosts_at_or_above(self, severity: Severity) -> list[str]:
        """Hosts with a finding of `severity` or worse, in inventory order."""
        return [
            r.host
            for r in self.results
            if r.data is not None and r.data.severity and r.data.severity.rank >= severity.rank
        ]


def evaluate(
    facts: Facts,
    host: str,
    rules: Sequence[AuditRule] = RULES,
    *,
    invoked: CommandLine | None = None,
) -> tuple[tuple[Finding, ...], tuple[Unchecked, ...]]:
    """The findings of `rules` on `facts` (most severe first), and the rules left unchecked;
    fix lines repeat the inventory of `invoked`."""
    findings: list[Finding] = []
    unchecked: list[Unchecked] = []
    for rule in rules:
        if rule.cluster_only and not facts.cluster:
            continue
        reasons = dict.fromkeys(facts.missing[name] for name in rule.reads if name in facts.missing)
        if reasons:
            unchecked.append(Unchecked(rule.id, "; ".join(reasons)))
            continue
        hit = rule.check(facts)
        if hit is None:
            continue
        findings.append(
            Finding(
                rule=rule.id,
                severity=rule.severity,
                setting=rule.setting,
                current=hit.current,
                recommended=hit.recommended,
                why=rule.why,
                fix=rule.fix_for(hit, host, invoked),
                value=hit.value,
                in_redis_config=rule.fixed_by_apply,
            )
        )
    findings.sort(key=lambda finding: -finding.severity.rank)
    return tuple(findings), tuple(unchecked)


def audit_host(
    host: Host,
    *,
    timeout: float,
    rate_window: float,
    instances_on_machine: int = 1,
    invoked: CommandLine | None = None,
) -> HostAudit:
    """Audit one Redis host; HostError when Redis cannot be read, PartialFailure (with the
    audit) when its machine could not be reached although the inventory says how."""
    facts, access_error = collect_facts(
        host,
        timeout=timeout,
        rate_window=rate_window,
        instances_on_machine=instances_on_machine,
    )
    findings, unchecked = evaluate(facts, host.name, invoked=invoked)
    audit = HostAudit(
        role=facts.role,
        version=str(facts.info.get("redis_version", "?")),
        findings=findings,
        unchecked=unchecked,
        system=facts.system,
        write_rate=facts.write_rate,
        severity=findings[0].severity if findings else None,
    )
    if access_error:
        raise PartialFailure(f"host access: {access_error}", audit)
    return audit


def audit_fleet(
    hosts: Sequence[Host],
    *,
    inventory_hosts: Sequence[Host],
    timeout: float,
    parallel: int,
    rate_window: float,
    invoked: CommandLine | None = None,
) -> FleetAudit:
    """Audit every selected Redis host, at most `parallel` at once; Sentinels are skipped.

    `rate_window` is how many seconds the write rate is measured over (0: not measured).
    Instances that share an address in `inventory_hosts` (selected or not) share its memory
    in the maxmemory budget. Fix lines repeat the inventory of `invoked`. Raises UsageError
    when only Sentinels were selected.
    """
    from redisops.fleet.selection import split_sentinels

    redis_hosts, sentinels = split_sentinels(hosts, lacking="Redis configuration")
    per_address = Counter(h.host.lower() for h in inventory_hosts if not h.is_sentinel)
    results = run_on_hosts(
        redis_hosts,
        lambda host: audit_host(
            host,
            timeout=timeout,
            rate_window=rate_window,
            instances_on_machine=per_address[host.host.lower()],
            invoked=invoked,
        ),
        parallel=parallel,
    )
    return FleetAudit(tuple(results), sentinels)


def recommended_config(audit: HostAudit) -> dict[str, str]:
    """The `redis_config` settings that fix this host's findings (most severe finding wins)."""
    config: dict[str, str] = {}
    for finding in audit.findings:
        if finding.in_redis_config and finding.value is not None:
            config.setdefault(finding.setting, finding.value)
    return config


def group_findings(
    results: Sequence[HostResult[HostAudit]], invoked: CommandLine | None = None
) -> tuple[FindingGroup, ...]:
    """Findings of all hosts, one group per rule and values, most severe first, in rule order;
    fix lines repeat the inventory of `invoked`."""
    rules = {rule.id: (order, rule) for order, rule in enumerate(RULES)}
    hosts: dict[tuple[str, str, str, str | None], list[str]] = {}
    findings: dict[tuple[str, str, str, str | None], Finding] = {}
    for result in results:
        for finding in result.data.findings if result.data else ():
            key = (finding.rule, finding.current, finding.recommended, finding.value)
            hosts.setdefault(key, []).append(result.host)
            findings.setdefault(key, finding)
    groups = []
    for key, finding in findings.items():
        hit = Hit(finding.current, finding.recommended, finding.value)
        fix = rules[finding.rule][1].fix_for(hit, ",".join(hosts[key]), invoked)
        groups.append(FindingGroup(finding, tuple(hosts[key]), fix))
    groups.sort(key=lambda g: (-g.finding.severity.rank, rules[g.finding.rule][0]))
    return tuple(groups)
