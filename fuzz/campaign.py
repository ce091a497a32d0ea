"""The campaign runner: splits the cases across the edges (kdb+ IPC : HTTP : FIX : storms as
20,000 : 5,000 : 2,000 : 100), runs them in a seeded shuffled order, classifies each (ok, error, closed,
hang, crash, internal = the fuzzer itself failed), notices a process of the stack that died or was
restarted (the case that was running is the crash), waits for the supervisor to bring it back, asks a
canary (margin[`FUND1] on its own connection) after every hang and every `canary_every` cases, samples
the memory (RSS) of every process, and builds the report (a table and a JSON document)."""
from __future__ import annotations

import random
import time
from collections import Counter, defaultdict

from fuzz.core import CRASH, HANG, INTERNAL, OK, OUTCOMES, Case, Result, short
from fuzz.fix_edge import FixTarget
from fuzz.http_edge import HttpTarget
from fuzz.ipc_edge import IpcTarget
from fuzz.storm import StormTarget

SHARES = {"ipc": 20_000, "http": 5_000, "fix": 2_000, "storm": 100}
EXAMPLES = 5              # cases kept per finding group in the report
RSS_EVERY_S = 1.0


def gateway_args(hang_timeout: float) -> list[str]:
    """The gateway's HTTP header and body timeouts for a campaign: half the hang bound, so that a
    client that never finishes its request is cut (408 or a close) before the case counts as a hang."""
    return ["--http-header-timeout", f"{hang_timeout / 2:g}", "--http-body-timeout", f"{hang_timeout / 2:g}"]


def split(cases: int, edges: list[str]) -> dict[str, int]:
    """`cases` shared across `edges` in SHARES' proportions (each edge at least one when possible)."""
    total = sum(SHARES[e] for e in edges)
    counts = {e: max(1 if cases >= len(edges) else 0, cases * SHARES[e] // total) for e in edges}
    counts[edges[0]] += cases - sum(counts.values())
    return counts


class Watch:
    """Deaths and restarts of the stack's processes, and their memory."""

    def __init__(self, stack):
        self.stack = stack
        self.names = list(stack.procs)
        self.deaths = {n: stack.deaths(n) for n in self.names}
        self.pids = {n: stack.pid(n) for n in self.names}
        self.rss: dict[str, dict[str, int]] = {}
        self.last_sample = 0.0
        self.sample(force=True)

    def died(self) -> list[str]:
        """Processes that died (or were restarted) since the last call."""
        out = []
        for n in self.names:
            deaths, pid = self.stack.deaths(n), self.stack.pid(n)
            if deaths != self.deaths[n] or pid != self.pids[n]:
                out.append(f"{n} (pid {self.pids[n]})")
            self.deaths[n], self.pids[n] = deaths, pid
        return out

    def recover(self, timeout: float) -> bool:
        """Waits until every process answers again (the supervisor restarts the dead)."""
        try:
            for n in self.names:
                self.stack.wait_ready(n, timeout)
        except Exception:                            # noqa: BLE001 - StackError: still down after timeout
            return False
        self.died()
        return True

    def sample(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last_sample < RSS_EVERY_S:
            return
        self.last_sample = now
        for n in self.names:
            try:
                rss = self.stack.rss_bytes(n)
            except Exception:                        # noqa: BLE001 - not running at this instant
                continue
            m = self.rss.setdefault(n, {"start": rss, "peak": rss, "end": rss})
            m["peak"], m["end"] = max(m["peak"], rss), rss


class Campaign:
    def __init__(self, stack, cases: int = 1000, seed: int = 1, edges=("ipc", "http", "fix", "storm"),
                 hang_timeout: float = 5.0, canary_every: int = 200, recover_timeout: float = 120.0,
                 progress=None):
        e = stack.endpoints
        self.stack, self.seed, self.hang_timeout = stack, seed, hang_timeout
        self.canary_every, self.recover_timeout, self.progress = canary_every, recover_timeout, progress
        self.edges = [x for x in SHARES if x in edges]
        unknown = set(edges) - set(SHARES)
        if unknown or not self.edges:
            raise ValueError(f"edges are {', '.join(SHARES)}; not {', '.join(sorted(unknown)) or 'none'}")
        ipc, http, fix = IpcTarget(e["gateway_port"]), HttpTarget(e["http_port"]), FixTarget(e["fix_port"])
        self.targets = {"ipc": ipc, "http": http, "fix": fix}
        self.targets["storm"] = StormTarget({"ipc": e["gateway_port"], "http": e["http_port"], "fix": e["fix_port"]},
                                            {"ipc": ipc.ping, "http": http.ping, "fix": fix.ping})
        self.counts = split(cases, self.edges)

    def run(self) -> dict:
        schedule = [edge for edge in self.edges for _ in range(self.counts[edge])]
        random.Random(self.seed).shuffle(schedule)
        watch = Watch(self.stack)
        tally = {edge: Counter() for edge in self.edges}
        flags = {edge: Counter() for edge in self.edges}
        groups: dict[tuple, dict] = {}
        canaries = []
        seconds = defaultdict(float)
        t0 = time.monotonic()
        try:
            for index, edge in enumerate(schedule):
                rng = random.Random(f"{self.seed}:{index}")
                target = self.targets[edge]
                started = time.monotonic()
                case = Case(edge, "?", "the generator failed")
                try:
                    case = target.generate(rng)
                    result = target.run(case, self.hang_timeout)
                except Exception as e:               # noqa: BLE001 - the campaign reports, never dies
                    result = Result(INTERNAL, f"{type(e).__name__}: {e}")
                died = watch.died()
                if died:
                    result = Result(CRASH, f"{', '.join(died)} died; case outcome was {result.outcome}: "
                                           f"{result.detail}", result.flags)
                    for t in self.targets.values():
                        t.close()
                    if not watch.recover(self.recover_timeout):
                        result.detail += f"; not back after {self.recover_timeout:g} s: campaign stopped"
                        self._record(index, case, result, tally, flags, groups)
                        break
                seconds[edge] += time.monotonic() - started
                self._record(index, case, result, tally, flags, groups)
                if result.outcome == HANG or (index + 1) % self.canary_every == 0:
                    canary = self.targets["ipc"].ping(self.hang_timeout)
                    if canary.outcome != OK:
                        canaries.append({"after_case": index, "edge": edge, "kind": case.kind,
                                         "outcome": canary.outcome, "detail": canary.detail})
                watch.sample()
                if self.progress and (index + 1) % 500 == 0:
                    self.progress(f"{index + 1:,} / {len(schedule):,} cases, {time.monotonic() - t0:.0f} s")
        finally:
            for t in self.targets.values():
                t.close()
        watch.sample(force=True)
        return {
            "config": {"cases": len(schedule), "seed": self.seed, "edges": self.edges,
                       "hang_timeout_s": self.hang_timeout, "per_edge": self.counts},
            "duration_s": round(time.monotonic() - t0, 1),
            "edges": {edge: {"cases": sum(tally[edge].values()), **{o: tally[edge][o] for o in OUTCOMES},
                             "flags": dict(flags[edge]), "seconds": round(seconds[edge], 1)} for edge in self.edges},
            "processes": {n: {"deaths": self.stack.deaths(n), "restarts": self.stack.restarts(n),
                              **{f"rss_{k}_mb": round(v / 2**20, 1) for k, v in watch.rss.get(n, {}).items()}}
                          for n in watch.names},
            "canary_failures": canaries,
            "findings": sorted(groups.values(), key=lambda g: (-_severity(g), -g["count"])),
        }

    @staticmethod
    def _record(index, case, result, tally, flags, groups) -> None:
        tally[case.edge][result.outcome] += 1
        flags[case.edge].update(result.flags)
        if result.outcome in (HANG, CRASH, INTERNAL) or result.flags:
            key = (case.edge, case.kind, result.outcome, tuple(result.flags))
            g = groups.setdefault(key, {"edge": case.edge, "kind": case.kind, "outcome": result.outcome,
                                        "flags": list(result.flags), "count": 0, "examples": []})
            g["count"] += 1
            if len(g["examples"]) < EXAMPLES:
                g["examples"].append({"case": index, "input": case.summary, "detail": short(result.detail, 300)})


def _severity(group: dict) -> int:
    return {CRASH: 4, HANG: 3, INTERNAL: 2}.get(group["outcome"], 1)


def table(report: dict) -> str:
    """The report as printed tables: outcomes per edge, processes, canary failures, findings."""
    lines = [f"fuzz campaign: {report['config']['cases']:,} cases, seed {report['config']['seed']}, "
             f"hang bound {report['config']['hang_timeout_s']:g} s, {report['duration_s']:,} s",
             "", f"{'edge':<6} {'cases':>7} " + " ".join(f"{o:>8}" for o in OUTCOMES) + "  flags"]
    for edge, r in report["edges"].items():
        fl = ", ".join(f"{k} {v}" for k, v in sorted(r["flags"].items())) or "-"
        lines.append(f"{edge:<6} {r['cases']:>7,} " + " ".join(f"{r[o]:>8,}" for o in OUTCOMES) + f"  {fl}")
    lines += ["", f"{'process':<12} {'deaths':>6} {'restarts':>8} {'rss start MB':>12} {'peak MB':>8} {'end MB':>8}"]
    for n, p in report["processes"].items():
        lines.append(f"{n:<12} {p['deaths']:>6} {p['restarts']:>8} {p.get('rss_start_mb', '-'):>12} "
                     f"{p.get('rss_peak_mb', '-'):>8} {p.get('rss_end_mb', '-'):>8}")
    if report["canary_failures"]:
        lines += ["", f"canary (margin[`FUND1] on its own connection) failed {len(report['canary_failures'])} times:"]
        lines += [f"  after case {c['after_case']} ({c['edge']} {c['kind']}): {c['outcome']} {c['detail']}"
                  for c in report["canary_failures"][:10]]
    lines += ["", "findings (outcome / flags, count, first example):"]
    for g in report["findings"]:
        ex = g["examples"][0]
        lines.append(f"  {g['outcome']:<8} {g['edge']}/{g['kind']} {','.join(g['flags']) or '-'} x{g['count']}: "
                     f"#{ex['case']} {ex['input'][:90]} -> {ex['detail'][:120]}")
    return "\n".join(lines)
