"""Alerts: Suricata-EVE-compatible JSON lines, aggregated so that a flood is one alert that grows.

Each line is an EVE ``alert`` event (``timestamp``, ``flow_id``, ``event_type``, ``src_ip``, ``src_port``,
``dest_ip``, ``dest_port``, ``proto``, ``alert{signature, signature_id, category, severity}``) so existing SIEM
parsers read it; our fields go in a ``packetclip`` object: mission, fine class, score, threshold, top concepts
with ATT&CK ids, a one-sentence explanation, the class definition from the text side, the nearest description
(when the model has an aligned text space; else null), and the aggregate. The schema is
``eve_schema.json`` beside this module.

Aggregation: one alert per (source, destination, fine class) per ``interval_s`` of capture time. The first
decision above threshold writes the alert at once (``aggregate.status: "new"``); later decisions of the same
key only grow its counts (flows, packets, decisions, first/last seen) and, when the interval closes or the
stream ends, one ``"final"`` line with the same ``alert_id`` carries the totals. A destination hit by more than
``fan_limit`` sources for one class (a spoofed flood) folds into one (any source, destination, class) alert,
and a source reaching more than ``fan_limit`` destinations (a sweep) into one (source, any destination, class)
alert: a 25,000-packet flood is one alert, whatever its source addresses.
"""

from __future__ import annotations

import heapq
import json
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

SCHEMA_PATH = Path(__file__).with_name("eve_schema.json")

#: Concepts of each fine class with their MITRE ATT&CK v15 technique (the mission graphs' core techniques;
#: see :mod:`packetclip.knowledge.missions`), most specific first.
CLASS_CONCEPTS: dict[str, tuple[tuple[str, str], ...]] = {
    "SYN Flood": (("half-open TCP connections exhaust the backlog", "T1499.001"), ("direct network flood", "T1498.001")),
    "ACK Flood": (("TCP ACK packets without a connection", "T1498.001"), ("OS exhaustion flood", "T1499.001")),
    "ICMP Flood": (("ICMP echo flood", "T1498.001"), ("network denial of service", "T1498")),
    "UDP Flood": (("UDP volumetric flood", "T1498.001"), ("network denial of service", "T1498")),
    "DNS Flood": (("DNS query flood on a resolver", "T1499.002"), ("direct network flood", "T1498.001")),
    "Slowloris": (("connections held open with partial headers", "T1499.002"), ("endpoint denial of service", "T1499")),
    "Slow HTTP": (("slow request bodies hold server workers", "T1499.002"), ("endpoint denial of service", "T1499")),
    "HTTP Flood": (("application request flood", "T1499.003"), ("service exhaustion flood", "T1499.002")),
    "Reflection Amplification": (("reflected, amplified replies", "T1498.002"), ("network denial of service", "T1498")),
    "Port Scan": (("probes to many ports of a host", "T1046"), ("scanning IP blocks", "T1595.001")),
    "UDP Scan": (("UDP probes to many ports", "T1046"), ("active scanning", "T1595")),
    "Service Scan": (("service and version probing", "T1046"), ("gather victim host software", "T1592.002")),
    "OS Scan": (("crafted probes to fingerprint the OS", "T1592"), ("active scanning", "T1595")),
    "Vulnerability Scan": (("automated vulnerability probing", "T1595.002"), ("wordlist scanning", "T1595.003")),
    "Ping Sweep": (("echo requests across many hosts", "T1018"), ("scanning IP blocks", "T1595.001")),
    "Dictionary Attack": (("password guessing against a login service", "T1110.001"), ("SSH remote service", "T1021.004")),
    "HTTP Brute Force": (("password guessing on web logins", "T1110.001"), ("brute force", "T1110")),
    "IoT Brute Force": (("default-credential guessing on IoT logins", "T1110.001"), ("credential stuffing", "T1110.004")),
}
_MISSION_CONCEPT = {"DoS": ("denial of service", "T1498"), "Reconnaissance": ("active scanning", "T1595"),
                    "Brute Force": ("brute force", "T1110")}
SEVERITY = {"DoS": 1, "Brute Force": 1, "Reconnaissance": 2}
PROTO_NAME = {1: "ICMP", 6: "TCP", 17: "UDP", 58: "IPv6-ICMP"}


def class_definitions() -> dict[str, str]:
    """One-sentence class definitions of the text side (``align/prompts.json``), empty if absent."""
    path = Path(__file__).resolve().parents[1] / "align" / "prompts.json"
    try:
        return dict(json.loads(path.read_text()).get("definitions", {}))
    except (OSError, ValueError):
        return {}


def concepts_of(fine: str, mission: str) -> list[dict]:
    pairs = CLASS_CONCEPTS.get(fine) or ((_MISSION_CONCEPT.get(mission, (mission, None))),)
    return [{"concept": c, "attack_id": t} for c, t in pairs]


def iso_time(ts_ns: int) -> str:
    """EVE timestamp: ``2026-03-05T08:26:40.123456+0000``."""
    dt = datetime.fromtimestamp(int(ts_ns) // 1000 / 1e6, tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%f") + "+0000"


def explain(fine: str, mission: str, score: float, ctx: dict, flow: dict, window_s: float) -> str:
    """One sentence saying what the model saw, from the features it used."""
    src, dst, port = flow["src_ip"], flow["dest_ip"], flow["dest_port"]
    n, replies = int(flow["n"]), int(flow["bwd"])
    w = f"{window_s:g} s"
    if mission == "Reconnaissance":
        evidence = (f"{src} probed {int(ctx['src_ports'])} port(s) on {int(ctx['src_dsts'])} host(s) in {w}, "
                    f"{ctx['pair_noreply']:.0%} of its flows to {dst} unanswered")
    elif mission == "Brute Force":
        evidence = (f"{src} opened {int(ctx['pair_flows'])} connection(s) to {dst}:{port} in {w} "
                    f"({n} packets in this one, {replies} answered)")
    else:
        evidence = (f"{dst} received {int(ctx['dst_pkts']):,} packet(s) from {int(ctx['dst_srcs'])} source(s) in {w}, "
                    f"{ctx['pair_noreply']:.0%} of the pair's flows unanswered")
    return f"{fine} ({mission}, score {score:.2f}): {evidence}."


@dataclass
class Aggregate:
    alert_id: int
    key: tuple
    fine: str
    mission: str
    first_ns: int
    last_ns: int
    interval_end_ns: int
    base: dict                       # the EVE fields of the first decision (flow id, addresses, ports, proto)
    pc: dict                         # the packetclip object of the first decision
    flows: int = 0
    packets: int = 0
    decisions: int = 0
    score: float = 0.0
    sources: set = field(default_factory=set)
    destinations: set = field(default_factory=set)
    written_packets: int = 0
    fold_hash: int | None = None


class AlertSink:
    """Where EVE lines go: a file appended line by line (flushed per line) and/or a stream."""

    def __init__(self, path: str | os.PathLike | None = None, stream=None):
        self.path = None if path is None else Path(path)
        self.stream = stream
        self._file = None
        if self.path is not None:
            try:
                self._file = open(self.path, "a", encoding="utf-8")
            except OSError as err:
                from packetclip.errors import PacketClipError

                raise PacketClipError(f"cannot append alerts to {self.path}: {err.strerror}") from None
        self.lines = 0

    def write(self, event: dict) -> None:
        line = json.dumps(event, separators=(",", ":"), ensure_ascii=False) + "\n"
        for f in (self._file, self.stream):
            if f is not None:
                f.write(line)        # one write per line: appends never interleave mid-line
                f.flush()
        self.lines += 1

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class Aggregator:
    """Turns decisions above threshold into aggregated EVE alerts (see the module doc)."""

    def __init__(self, sinks: list[AlertSink], *, interval_s: float = 60.0, fan_limit: int = 16,
                 window_s: float = 10.0, max_open: int = 100_000):
        self.sinks = sinks
        self.interval_ns = int(interval_s * 1e9)
        self.fan_limit = int(fan_limit)
        self.window_s = window_s
        self.max_open = int(max_open)
        self.open: dict[tuple, Aggregate] = {}
        self.folded: set[int] = set()          # fold hashes of open any-source / any-destination alerts
        self.fan_in: dict[tuple, set] = {}
        self.fan_out: dict[tuple, set] = {}
        self.next_id = 1
        self.alerts = 0
        self.lines = 0
        self.per_mission: dict[str, int] = {}
        self.definitions = class_definitions()
        self._ends: list[tuple[int, int, tuple]] = []    # heap of (interval end, alert id, key) of open alerts
        # per-alert latency: the caller sets ``trigger_wall`` (perf_counter when the packet that raised the
        # decisions was read) before :meth:`add`; each new alert's line, once written and flushed, records
        # now - trigger_wall (ms) and whether it was raised at a flow's expiry
        self.trigger_wall: float | None = None
        self.trigger_cpu: float | None = None          # the same moment in this thread's CPU time
        self.trigger_expiry = False
        self.latencies_ms: list[float] = []
        self.latencies_cpu_ms: list[float] = []         # CPU time spent in between (what a free core would take)
        self.latency_at_expiry: list[bool] = []

    def _emit(self, agg: Aggregate, status: str) -> None:
        event = dict(agg.base)
        event["timestamp"] = iso_time(agg.last_ns if status != "new" else agg.first_ns)
        pc = dict(agg.pc)
        pc["score"] = round(float(agg.score), 4)
        pc["aggregate"] = {"alert_id": agg.alert_id, "status": status, "flows": agg.flows, "packets": agg.packets,
                           "decisions": agg.decisions, "first_seen": iso_time(agg.first_ns),
                           "last_seen": iso_time(agg.last_ns), "sources": len(agg.sources),
                           "destinations": len(agg.destinations),
                           "any_source": agg.key[0] is None, "any_destination": agg.key[1] is None}
        event["packetclip"] = pc
        for s in self.sinks:
            s.write(event)
        if status == "new" and self.trigger_wall is not None and len(self.latencies_ms) < 1_000_000:
            self.latencies_ms.append((time.perf_counter() - self.trigger_wall) * 1e3)
            self.latencies_cpu_ms.append((time.thread_time() - (self.trigger_cpu or 0.0)) * 1e3)
            self.latency_at_expiry.append(bool(self.trigger_expiry))
        self.lines += 1
        agg.written_packets = agg.packets

    def close_until(self, now_ns: int) -> None:
        """Write the final line of every aggregate whose interval ended before ``now_ns`` (a heap of interval
        ends: called per packet batch, it must not walk every open alert)."""
        ends = self._ends
        while ends and ends[0][0] <= now_ns:
            _, alert_id, key = heapq.heappop(ends)
            agg = self.open.get(key)
            if agg is not None and agg.alert_id == alert_id:
                self._close(key)

    def _close(self, key) -> None:
        agg = self.open.pop(key)
        if agg.fold_hash is not None:
            self.folded.discard(agg.fold_hash)
        if agg.packets != agg.written_packets or agg.decisions > 1:
            self._emit(agg, "final")

    def flush(self) -> None:
        for k in list(self.open):
            self._close(k)
        self._ends.clear()
        self.fan_in.clear()
        self.fan_out.clear()

    def add(self, *, src: int | None, dst: int | None, fine: str, mission: str, ts_ns: int, flows: int,
            packets: int, decisions: int, score: float, make_base, last_ns: int | None = None,
            in_hash: int | None = None, out_hash: int | None = None, src_keys=(), dst_keys=()) -> int:
        """Account a group of decisions of one (source, destination, class); returns the alert id.

        ``src``/``dst`` None: the group is already folded (any source / any destination). ``in_hash`` /
        ``out_hash`` name the (destination, class) / (source, class) fold so the caller can fold later
        decisions before they reach here (:attr:`folded`). ``make_base()`` builds (EVE base fields,
        packetclip object) only when a new alert is opened."""
        key = (src, dst, fine)
        if src is not None and dst is not None and key not in self.open:
            if len(self.fan_in) + len(self.fan_out) > 2 * self.max_open:    # bounded memory
                self.fan_in.clear()
                self.fan_out.clear()
            fi = self.fan_in.setdefault((dst, fine), set())
            fo = self.fan_out.setdefault((src, fine), set())
            if len(fi) < 4 * self.fan_limit:
                fi.add(src)
            if len(fo) < 4 * self.fan_limit:
                fo.add(dst)
            if len(fi) > self.fan_limit:
                key = (None, dst, fine)
            elif len(fo) > self.fan_limit:
                key = (src, None, fine)
        agg = self.open.get(key)
        is_new = agg is None
        if is_new:
            if len(self.open) >= self.max_open:          # bounded: the oldest alert is closed early
                self._close(next(iter(self.open)))
            base, pc = make_base()
            fold = in_hash if key[0] is None else out_hash if key[1] is None else None
            agg = Aggregate(self.next_id, key, fine, mission, ts_ns, ts_ns, ts_ns + self.interval_ns, base, pc,
                            fold_hash=fold)
            if fold is not None:
                self.folded.add(fold)
            self.next_id += 1
            self.open[key] = agg
            heapq.heappush(self._ends, (agg.interval_end_ns, agg.alert_id, key))
            if len(self._ends) > 4 * self.max_open:      # closed alerts' entries: drop them (bounded memory)
                self._ends = [e for e in self._ends if e[2] in self.open and self.open[e[2]].alert_id == e[1]]
                heapq.heapify(self._ends)
            self.alerts += 1
            self.per_mission[mission] = self.per_mission.get(mission, 0) + 1
        agg.flows += flows
        agg.packets += packets
        agg.decisions += decisions
        agg.first_ns = min(agg.first_ns, ts_ns)
        agg.last_ns = max(agg.last_ns, ts_ns if last_ns is None else last_ns)
        agg.score = max(agg.score, score)
        for keys, one, into in ((src_keys, src, agg.sources), (dst_keys, dst, agg.destinations)):
            if len(into) < 10_000:
                into.update(keys[:10_000] if len(keys) else ([one] if one is not None else []))
        if is_new:
            self._emit(agg, "new")
        return agg.alert_id


def load_schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


def validate(event: dict, schema: dict | None = None) -> list[str]:
    """Errors of ``event`` against the EVE schema (empty list: valid). Uses ``jsonschema`` when installed,
    else a small validator of the subset the schema uses (type, required, properties, enum, minimum,
    items, additionalProperties false, pattern)."""
    schema = schema or load_schema()
    try:
        import jsonschema
    except ImportError:
        return _validate(event, schema, "$")
    v = jsonschema.Draft202012Validator(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in v.iter_errors(event)]


_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def _is_type(value, t: str) -> bool:
    if t == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if t == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, _TYPES[t])


def _validate(value, schema: dict, where: str) -> list[str]:
    import re

    errors = []
    types = schema.get("type")
    if types is not None:
        types = [types] if isinstance(types, str) else types
        if not any(_is_type(value, t) for t in types):
            return [f"{where}: {value!r} is not of type {types}"]
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{where}: {value!r} not in {schema['enum']}")
    if "minimum" in schema and _is_type(value, "number") and value < schema["minimum"]:
        errors.append(f"{where}: {value} < {schema['minimum']}")
    if "maximum" in schema and _is_type(value, "number") and value > schema["maximum"]:
        errors.append(f"{where}: {value} > {schema['maximum']}")
    if "pattern" in schema and isinstance(value, str) and not re.search(schema["pattern"], value):
        errors.append(f"{where}: {value!r} does not match {schema['pattern']}")
    if isinstance(value, dict):
        for name in schema.get("required", []):
            if name not in value:
                errors.append(f"{where}: missing {name!r}")
        props = schema.get("properties", {})
        for name, sub in value.items():
            if name in props:
                errors.extend(_validate(sub, props[name], f"{where}.{name}"))
            elif schema.get("additionalProperties") is False:
                errors.append(f"{where}: unexpected {name!r}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            errors.extend(_validate(item, schema["items"], f"{where}[{i}]"))
    if "minItems" in schema and isinstance(value, list) and len(value) < schema["minItems"]:
        errors.append(f"{where}: fewer than {schema['minItems']} items")
    return errors


def stdout_sink() -> AlertSink:
    return AlertSink(stream=sys.stdout)


def proto_name(p: int) -> str:
    return PROTO_NAME.get(int(p), str(int(p)))


__all__ = ["AlertSink", "Aggregator", "validate", "load_schema", "explain", "concepts_of", "iso_time",
           "CLASS_CONCEPTS", "SCHEMA_PATH"]
