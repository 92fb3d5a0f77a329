"""Is every sentence of a description true of its flow? Rules per claim, checked against the flow's own reading.

Descriptions are the supervision of the alignment and the explanation shown to an analyst, so a sentence that
its flow does not support is a bug, whatever the label. Each rule pairs a *claim* (a phrase a description can
contain) with the *evidence* that must hold for it (read off the flow's columns and its host context by
:class:`~packetclip.language.facts.FlowFacts`). The opening sentence ("A network traffic of {label}.") and the
knowledge-graph concept clauses (they name related concepts, not observations) are not checked.

:func:`violations` returns one row per broken rule; ``faithfulness_violations`` in the benchmarks is its
length over every description written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import pandas as pd

from packetclip.language import templates as T
from packetclip.language.facts import FlowFacts, resolve_columns


def _ctx(f: FlowFacts, key: str) -> float:
    return float((f.context or {}).get(key, 0.0) or 0.0)


def _payload(f: FlowFacts) -> bool:
    """The sender transmitted application data (a request, credentials, a header...)."""
    return f.fwd_bytes > 0


def _heavy_load(f: FlowFacts) -> bool:
    """Flood words need a high rate: the flow's own (1,000 packets/s over 3+ packets), or its destination's
    (100+ flows per window from 50+ sources), or a host answering 50+ addresses with errors (backscatter)."""
    return ((f.pkts_s >= 1000 and f.pkts >= 3) or (_ctx(f, "dst_flows") >= 100 and _ctx(f, "dst_srcs") >= 50)
            or _ctx(f, "src_hosts") >= 50)


def _slow(f: FlowFacts) -> bool:
    return f.iat_us >= 1e6 or (0 <= f.pkts_s < 10 and f.duration_us > 1e6)


def _unfinished_handshake(f: FlowFacts) -> bool:
    return f.is_tcp and f.flags["syn"] > 0 and f.fwd_bytes == 0 and f.fwd_pkts <= 2


@dataclass(frozen=True)
class Rule:
    name: str
    claim: re.Pattern
    holds: Callable[[FlowFacts, str], bool]
    needs: str  # what the claim needs, for the report


def _rule(name: str, pattern: str, holds: Callable[[FlowFacts, str], bool], needs: str) -> Rule:
    return Rule(name, re.compile(pattern, re.IGNORECASE), holds, needs)


RULES: tuple[Rule, ...] = (
    _rule("benign_claim", r"\b(normal|harmless|legitimate|routine|everyday|benign)\b",
          lambda f, label: label == "Benign", "the Benign label (no reading of a flow shows intent)"),
    _rule("web_request", r"\b(web request|short requests|pages?\b|paths\b|HTTP headers?|partial header|"
                         r"request is never finished|never completing its request|request never completes)",
          lambda f, _: f.is_tcp and _payload(f), "TCP payload from the client (a request)"),
    _rule("credentials", r"\b(username|password|credential|log in\b|login (dialogue|session|attempt)|login sessions)",
          lambda f, _: (f.svc in T.LOGIN_SERVICES and _payload(f)) or f.mqtt_login,
          "payload to a login service (or an MQTT session that is only a CONNECT and its CONNACK)"),
    _rule("flood_words", r"\b(hammer\w*|barrage|torrent|bombard\w*|deluge|saturat\w*|overwhelm\w*|pour in|"
                         r"extreme|volumetric|massive)\b",
          lambda f, _: _heavy_load(f), "a high packet or flow rate (flow or destination)"),
    _rule("spoofing", r"\b(spoofed|forged)\b",
          lambda f, _: (_ctx(f, "dst_srcs") >= 50 or _ctx(f, "src_hosts") >= 50
                        or (f.answers_only and _ctx(f, "dst_srcs") >= 10)),
          "50 or more distinct addresses in the window (10 or more servers answering a host that asked nothing)"),
    _rule("half_open", r"\b(half-open|(never|at no point) (completed|followed up|answered)|is (never|at no point) completed)\b",
          lambda f, _: _unfinished_handshake(f) or (f.is_tcp and f.flags["syn"] > 0 and not f.bwd_pkts),
          "a TCP handshake request without completion"),
    _rule("ping", r"\b(pings?|pinged|echo requests?)\b",
          lambda f, _: f.is_icmp and f.icmp_type == 8, "ICMP echo requests"),
    _rule("dns_query", r"\b(quer(y|ies)|lookups?)\b",
          lambda f, _: f.svc in ("DNS", "mDNS", "DNS-over-TLS") and _payload(f) and not f.answers_only,
          "payload from a client to a DNS port (not a server's answers)"),
    _rule("unreachable", r"\bunreachable\b", lambda f, _: f.is_icmp and f.icmp_type == 3,
          "ICMP destination-unreachable messages"),
    _rule("dns", r"\b(hostname|name server|resolver|domain name|lookups?)\b",
          lambda f, _: f.svc in ("DNS", "mDNS", "DNS-over-TLS"), "a DNS service port"),
    _rule("fingerprinting", r"\b(operating system|system software|fingerprint\w*)\b",
          lambda f, _: f.is_tcp and ((f.win in T.OS_PROBE_WINDOWS and f.fwd_bytes == 0)
                                     or f.flags["urg"] + f.flags["ece"] + f.flags["cwr"] > 0),
          "a crafted TCP probe (an OS-detection window without payload, or odd flags)"),
    _rule("many_ports", r"\b(different ports|one port after another|ports one after another)\b",
          lambda f, _: _ctx(f, "pair_ports") >= 10, "10 or more ports of one host tried by the source"),
    _rule("slow", r"\b(trickles?|slowly|slow)\b", lambda f, _: _slow(f), "a gap of 1 s or more between packets"),
    _rule("reply_no_payload", r"\b(replies carry no payload|returns no data)",
          lambda f, _: f.bwd_bytes == 0, "no payload in the reply direction"),
    _rule("no_payload", r"(?<!eplies carry )\b(no payload|header only|header-only|no application data|without any payload|"
                        r"payload-less|empty (probe|datagram|packet))\b",
          lambda f, _: f.fwd_bytes == 0, "no payload from the sender"),
    _rule("flaw_intent", r"(security flaws|outdated software|weak or outdated|weaknesses|known paths)",
          lambda f, label: label == "Vulnerability Scan",
          "the Vulnerability Scan label (one flow shows requests, not a search for flaws)"),
    _rule("error_page", r"(error[- ]page|whether (a|the) page exists|page after page)",
          lambda f, _: f.svc in T.WEB_SERVICES and _payload(f) and 0 < f.bwd_bytes <= T.ERROR_PAGE_MAX,
          f"a web request answered with an error-page-sized reply (at most {T.ERROR_PAGE_MAX} bytes)"),
    _rule("partial_header", r"\b(incomplete HTTP headers?|partial header)",
          lambda f, _: not f.full_header_possible,
          f"client segments all below {T.FULL_HEADER_MIN} bytes (no whole request header could have been sent)"),
    _rule("answers", r"\b(unrequested|without any request|(sent|transmitted|emitted) (it )?no(thing| request)|"
                     r"without asking)",
          lambda f, _: f.answers_only, "a UDP flow sent from the service's port (answers, no request)"),
    _rule("amplified", r"\b(amplif\w*|oversized \w+ answers|many times the size)",
          lambda f, _: f.supports("amplification") is True,
          "a reply larger than its request, or 400-byte answers with no request, over UDP/ICMP"),
    _rule("no_handshake", r"(no handshake precedes|without a handshake|outside any connection|"
                          r"belongs to no connection|no connection it belongs to)",
          lambda f, _: f.is_tcp and f.flags["syn"] == 0 and f.fwd_bytes == 0,
          "a TCP flow without SYN or payload"),
    _rule("host_sweep", r"(host after host|which addresses (respond|are alive)|whether the host responds)",
          lambda f, _: f.host_sweep, "its source reaching 10+ hosts, at most 3 ports of this one, bare probes"),
    _rule("pages_back", r"\b(answered with a page|pages sent back|of pages\b)",
          lambda f, _: f.svc in T.WEB_SERVICES and _payload(f) and f.bwd_bytes > T.ERROR_PAGE_MAX,
          f"a web request answered with more than {T.ERROR_PAGE_MAX} bytes"),
    _rule("request_unfinished", r"(request is (never|at no point) finished|(never|at no point) completing its request|"
                                r"request (never|at no point) completes|(never|at no point) finishing|"
                                r"(never|at no point) complete it|the server keeps waiting)",
          lambda f, _: f.is_tcp and _payload(f) and f.bwd_bytes == 0,
          "TCP payload from the client and none back (the server has not answered)"),
    _rule("one_request", r"client (sends|transmits|emits) nothing but acknowledg",
          lambda f, _: f.is_tcp and 0 < f.fwd_bytes <= f.fwd_max,
          "all the client's payload in one segment (the rest of its packets carry none)"),
    _rule("web_server", r"\bweb servers?\b",
          lambda f, _: f.svc in ("HTTP", "HTTP-alt", "HTTPS", "HTTPS-alt"), "a web service port"),
    _rule("tcp_only", r"\b(SYN|handshake|TCP window|connection request)\b",
          lambda f, text: f.is_tcp or bool(re.search(r"no TCP handshake|has no handshake", text)),
          "a TCP flow"),
)

_CONCEPT_CLAUSE = re.compile(
    r"(associated concepts:|it relates to|this behaviour is linked to|in threat terms it suggests|"
    r"security knowledge connects it with|concepts:)[^.;]*", re.IGNORECASE)
_PREFIX = re.compile(r"^A network traffic of [^.]*\.\s*")


def checked_text(text: str) -> str:
    """The part of a description that makes claims about the flow: without the opening sentence (the
    label) and the knowledge-graph concept clauses."""
    return _CONCEPT_CLAUSE.sub("", _PREFIX.sub("", text))


def check(text: str, facts: FlowFacts, label: str) -> list[tuple[str, str, str]]:
    """``[(rule, matched phrase, what it needs)]`` for every claim of ``text`` its flow does not support."""
    body = checked_text(text)
    out = []
    for rule in RULES:
        m = rule.claim.search(body)
        if m and not rule.holds(facts, label if rule.name != "tcp_only" else body):
            out.append((rule.name, m.group(0), rule.needs))
    return out


def violations(descriptions: pd.DataFrame, flows: pd.DataFrame) -> pd.DataFrame:
    """One row per (description, broken rule): flow_id, label, rule, claim, needs, text.

    ``flows`` is the flow table the descriptions were written from (host context is added here when the table
    has addresses and times and no context yet, over the whole table, as ``describe`` does).
    """
    from packetclip.language.context import add_host_context

    flows = add_host_context(flows).drop_duplicates("flow_id")
    cols = resolve_columns(flows.columns)
    wanted = flows[flows["flow_id"].isin(descriptions["flow_id"])]
    records = dict(zip(wanted["flow_id"].to_numpy(), wanted[list(set(cols.values()))].to_dict("records")))
    facts_of: dict = {}
    rows = []
    for flow_id, label, text in zip(descriptions["flow_id"], descriptions["label"].astype(str), descriptions["text"]):
        if flow_id not in records:
            rows.append((flow_id, label, "unknown_flow", "", "the flow in the flow table", text))
            continue
        if flow_id not in facts_of:
            facts_of[flow_id] = FlowFacts.from_row(records[flow_id], cols)
        for name, claim, needs in check(text, facts_of[flow_id], label):
            rows.append((flow_id, label, name, claim, needs, text))
    return pd.DataFrame(rows, columns=["flow_id", "label", "rule", "claim", "needs", "text"])
