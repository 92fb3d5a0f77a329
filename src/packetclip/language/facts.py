"""What one flow-table row says, as numbers and as readable text (step 1 of a description).

:class:`FlowFacts` reads CICFlowMeter columns (the names of ../shared/data/cicids2017 and of our own
ingest) and nDPI fields, and decides which situation of each template family applies (a half-open
handshake, a one-way flow, a slow trickle...). Formatting keeps numbers short and human
("1.2 MB", "35 ms", "4,100 packets/s"), and every formatted number is what a paraphrase must keep.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from packetclip.language import templates as T
from packetclip.language.context import CONTEXT_COLUMNS

# Canonical column for each fact (CICFlowMeter names); the nDPI fields may come bare or prefixed.
COLUMNS: dict[str, tuple[str, ...]] = {
    "duration_us": ("Flow Duration",),
    "fwd_pkts": ("Total Fwd Packet", "Total Fwd Packets"),
    "bwd_pkts": ("Total Bwd packets", "Total Backward Packets"),
    "fwd_bytes": ("Total Length of Fwd Packet", "Total Length of Fwd Packets"),
    "bwd_bytes": ("Total Length of Bwd Packet", "Total Length of Bwd Packets"),
    "bytes_s": ("Flow Bytes/s",),
    "pkts_s": ("Flow Packets/s",),
    "iat_us": ("Flow IAT Mean",),
    "syn": ("SYN Flag Count",),
    "rst": ("RST Flag Count",),
    "fin": ("FIN Flag Count",),
    "ack": ("ACK Flag Count",),
    "psh": ("PSH Flag Count",),
    "urg": ("URG Flag Count",),
    "ece": ("ECE Flag Count",),
    "cwr": ("CWR Flag Count",),
    "win": ("FWD Init Win Bytes", "Init Fwd Win Bytes", "Init_Win_bytes_forward"),
    "fwd_max": ("Fwd Packet Length Max", "Max Fwd Packet Length"),
    "dport": ("Dst Port", "Destination Port"),
    "sport": ("Src Port", "Source Port"),
    "proto": ("Protocol",),
    "icmp_type": ("ICMP Type",),
    "app": ("app", "ndpi_app"),
    "category": ("category", "ndpi_category"),
    "encrypted": ("encrypted", "ndpi_encrypted"),
}
# Host context (packetclip.language.context): what the flow's source and destination did around it.
COLUMNS.update({name: (name,) for name in CONTEXT_COLUMNS})
# Without these a row says too little to describe.
REQUIRED = ("duration_us", "fwd_pkts", "bwd_pkts", "proto")

NUMBER_RE = re.compile(r"(?<![A-Za-z0-9_.])(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(?![0-9])")


def resolve_columns(columns) -> dict[str, str]:
    """Fact name -> the column of this table that holds it (only facts that are present)."""
    have = set(columns)
    found = {}
    for fact, names in COLUMNS.items():
        for name in names:
            if name in have:
                found[fact] = name
                break
    return found


# ---- formatting -----------------------------------------------------------------------------------


def round_sig(x: float, digits: int = 2) -> float:
    if x == 0 or not math.isfinite(x):
        return 0.0
    rounded = float(f"{x:.{digits}g}")
    return rounded if math.isfinite(rounded) else x


def _num(x: float) -> str:
    """A rounded number as text: thousands separators, no trailing '.0'."""
    if abs(x - round(x)) < 1e-9:
        return f"{int(round(x)):,}"
    text = f"{x:,.6f}".rstrip("0").rstrip(".")
    return text


def fmt_count(n: float, singular: str, plural: str | None = None) -> str:
    n = int(round(n))
    return f"{n:,} {singular if n == 1 else (plural or singular + 's')}"


def fmt_bytes(b: float) -> str:
    """A byte amount: '64 bytes', '1.2 kB', '35 MB' (SI units, two significant digits above 1 kB)."""
    b = max(0.0, float(b))
    if b < 1000:
        return fmt_count(b, "byte")
    for unit, scale in (("kB", 1e3), ("MB", 1e6), ("GB", 1e9), ("TB", 1e12)):
        value = round_sig(b / scale, 2)
        if value < 1000 or unit == "TB":
            return f"{_num(value)} {unit}"
    raise AssertionError("unreachable")


def fmt_size(b: float) -> str:
    """A packet size, exact up to 9,999 bytes ('1,400 bytes')."""
    return fmt_count(b, "byte") if b < 10_000 else fmt_bytes(b)


def fmt_duration(us: float) -> str:
    """A time span from microseconds: '81 µs', '35 ms', '3.1 s', '4.2 min', '1.5 h'."""
    us = max(0.0, float(us))
    if us < 1000:
        return f"{_num(round(us))} µs"
    if us < 1e6:
        return f"{_num(round_sig(us / 1e3, 2) if us < 1e5 else round(us / 1e3))} ms"
    s = us / 1e6
    if s < 120:
        return f"{_num(round_sig(s, 2) if s < 100 else round(s))} s"
    if s < 7200:
        return f"{_num(round_sig(s / 60, 2))} min"
    return f"{_num(round_sig(s / 3600, 2))} h"


def fmt_rate(x: float, unit: str) -> str:
    """A rate with two significant digits: '4,100 packets/s', '35 packets/s', '0.54 packets/s'."""
    x = max(0.0, float(x))
    value = round_sig(x, 2) if x >= 100 or x < 10 else round(x)
    return f"{_num(value)} {unit}"


def fmt_byte_rate(x: float) -> str:
    x = max(0.0, float(x))
    if x < 1000:
        return fmt_rate(x, "bytes/s")
    for unit, scale in (("kB/s", 1e3), ("MB/s", 1e6), ("GB/s", 1e9)):
        value = round_sig(x / scale, 2)
        if value < 1000 or unit == "GB/s":
            return f"{_num(value)} {unit}"
    raise AssertionError("unreachable")


def numbers_in(text: str) -> list[float]:
    """Every number written in ``text`` ('4,100' -> 4100.0, '0.54' -> 0.54); digits inside words are skipped."""
    out = []
    for whole, frac in NUMBER_RE.findall(text):
        out.append(float(whole.replace(",", "") + (frac or "")))
    return out


# ---- facts ----------------------------------------------------------------------------------------


def _float(row: Mapping[str, Any], cols: Mapping[str, str], fact: str, default: float = 0.0) -> float:
    name = cols.get(fact)
    if name is None:
        return default
    value = row.get(name)
    try:
        value = float(value)
    except (TypeError, ValueError):
        return default
    return value if math.isfinite(value) else default


def _text(row: Mapping[str, Any], cols: Mapping[str, str], fact: str) -> str | None:
    name = cols.get(fact)
    if name is None:
        return None
    value = row.get(name)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = " ".join(str(value).split())
    return text if text and text.lower() not in ("nan", "none", "<na>", "unknown") else None


def _rate(value: float) -> float:
    """A per-second rate, or -1 (unknown) when it is negative or beyond any link (10^15 /s is petabit)."""
    return value if 0 <= value < 1e15 else -1.0


@dataclass
class FlowFacts:
    """The facts of one flow and the situation each template family is in."""

    proto_num: int
    dport: int
    sport: int
    fwd_pkts: int
    bwd_pkts: int
    fwd_bytes: float
    bwd_bytes: float
    duration_us: float
    pkts_s: float
    bytes_s: float
    iat_us: float
    flags: dict[str, int]
    win: int
    icmp_type: int | None
    app: str | None = None
    category: str | None = None
    encrypted: bool | None = None
    service: tuple[str, str] | None = field(default=None)
    context: dict[str, float] | None = field(default=None)
    fwd_max: float = -1.0   # largest client payload; -1 when the table does not say

    @classmethod
    def from_row(cls, row: Mapping[str, Any], cols: Mapping[str, str]) -> "FlowFacts":
        flags = {f: max(0, int(_float(row, cols, f))) for f in ("syn", "rst", "fin", "ack", "psh", "urg", "ece", "cwr")}
        icmp = _float(row, cols, "icmp_type", -1.0)
        encrypted = _text(row, cols, "encrypted")
        facts = cls(
            proto_num=int(_float(row, cols, "proto")),
            dport=int(_float(row, cols, "dport", -1.0)),
            sport=int(_float(row, cols, "sport", -1.0)),
            fwd_pkts=max(0, int(_float(row, cols, "fwd_pkts"))),
            bwd_pkts=max(0, int(_float(row, cols, "bwd_pkts"))),
            fwd_bytes=max(0.0, _float(row, cols, "fwd_bytes")),
            bwd_bytes=max(0.0, _float(row, cols, "bwd_bytes")),
            duration_us=max(0.0, _float(row, cols, "duration_us")),
            pkts_s=_rate(_float(row, cols, "pkts_s", -1.0)),
            bytes_s=_rate(_float(row, cols, "bytes_s", -1.0)),
            iat_us=max(0.0, _float(row, cols, "iat_us")),
            flags=flags,
            win=max(0, int(_float(row, cols, "win"))),
            icmp_type=int(icmp) if icmp >= 0 else None,
            app=_text(row, cols, "app"),
            category=_text(row, cols, "category"),
            encrypted=None if encrypted is None else encrypted.lower() in ("true", "1", "yes", "encrypted"),
            fwd_max=_float(row, cols, "fwd_max", -1.0),
        )
        facts.service = facts._lookup_service()
        if "ctx_src_flows" in cols and _float(row, cols, "ctx_src_flows", -1.0) >= 1:
            facts.context = {name[4:]: _float(row, cols, name) for name in CONTEXT_COLUMNS if name in cols}
        return facts

    # -- derived ------------------------------------------------------------------------------------

    @property
    def proto(self) -> str:
        return T.IP_PROTOCOLS.get(self.proto_num, str(self.proto_num))

    @property
    def is_tcp(self) -> bool:
        return self.proto_num == 6

    @property
    def is_udp(self) -> bool:
        return self.proto_num == 17

    @property
    def is_icmp(self) -> bool:
        return self.proto_num in (1, 58)

    @property
    def pkts(self) -> int:
        return self.fwd_pkts + self.bwd_pkts

    @property
    def total_bytes(self) -> float:
        return self.fwd_bytes + self.bwd_bytes

    @property
    def server_port(self) -> int:
        """The service side: the destination port, unless only the source port is a well-known one (a
        reply from a service to a client's port)."""
        if (self.dport not in T.SERVICES and self.sport in T.SERVICES and self.sport > 0
                and (self.sport < 1024 or self.dport >= 1024)):
            return self.sport
        return self.dport

    def _lookup_service(self) -> tuple[str, str] | None:
        if not (self.is_tcp or self.is_udp) or self.server_port <= 0:
            return None
        return T.SERVICES.get(self.server_port)

    @property
    def answers_only(self) -> bool:
        """A UDP flow whose sender is the service side (its source port is the service, not its destination):
        the flow holds a server's answers and no request from the host that receives them."""
        return (self.is_udp and self.sport > 0 and self.server_port == self.sport != self.dport
                and self.fwd_pkts > 0 and self.fwd_bytes > 0)

    @property
    def stray_flags(self) -> str | None:
        """For a lone header-only TCP segment without SYN (nothing back): its ACK/RST flags ("RST", "ACK",
        "RST and ACK"), else None."""
        f = self.flags
        if not (self.is_tcp and not f["syn"] and self.fwd_bytes == 0 and self.fwd_pkts <= 2 and not self.bwd_pkts):
            return None
        names = [k.upper() for k in ("rst", "ack") if f[k]]
        return " and ".join(names) if names else None

    def _ctx(self, key: str) -> float:
        return float((self.context or {}).get(key, 0.0) or 0.0)

    @property
    def host_sweep(self) -> bool:
        """Host context of host discovery: the source reaches 10+ hosts in the window, at most 3 ports of this
        one, and this flow is a bare probe (a header-only TCP packet or two, or a ping and its retries)."""
        probe = ((self.is_tcp and self.fwd_bytes == 0 and self.fwd_pkts <= 2)
                 or (self.is_icmp and self.icmp_type == 8 and self.fwd_pkts <= 4))
        return probe and self._ctx("src_hosts") >= 10 and 0 < self._ctx("pair_ports") <= 3

    @property
    def mqtt_login(self) -> bool:
        """An MQTT session that is only a login: one client message of at most 80 bytes (a CONNECT, which carries
        the username and password), a 4-byte answer (a CONNACK) and nothing published, all within a second."""
        return (self.is_tcp and self.svc in ("MQTT",) and 0 < self.fwd_bytes <= self.fwd_max
                and self.fwd_bytes <= 80 and self.bwd_bytes == 4 and self.duration_us < 1e6)

    @property
    def full_header_possible(self) -> bool:
        """Whether a client segment was large enough to hold a whole request header (unknown: True)."""
        return self.fwd_max < 0 or self.fwd_max >= T.FULL_HEADER_MIN

    @property
    def svc(self) -> str | None:
        return self.service[0] if self.service else None

    @property
    def mean_payload(self) -> float:
        return self.total_bytes / self.pkts if self.pkts else 0.0

    @property
    def fwd_mean_payload(self) -> float:
        return self.fwd_bytes / self.fwd_pkts if self.fwd_pkts else 0.0

    def fields(self) -> dict[str, str]:
        """Formatted values for the template fields."""
        f = self.flags
        odd = [f"{f[k]} {k.upper()}" for k in ("urg", "ece", "cwr") if f[k]]
        ratio = self.bwd_bytes / self.fwd_bytes if self.fwd_bytes else 0.0
        kind = None
        if self.is_icmp:
            kind = T.ICMP_TYPES.get(self.icmp_type, f"type {self.icmp_type} messages") if self.icmp_type is not None \
                else "control messages"
        return {
            "proto": self.proto,
            "proto_l": self.proto.lower(),
            "port": str(self.server_port) if self.server_port >= 0 else "unknown",
            "svc": self.svc or "",
            "svc_desc": self.service[1] if self.service else "",
            "icmp_kind": kind or "",
            "fwd_pkts": fmt_count(self.fwd_pkts, "packet"),
            "bwd_pkts": fmt_count(self.bwd_pkts, "packet"),
            "pkts": fmt_count(self.pkts, "packet"),
            "fwd_bytes": fmt_bytes(self.fwd_bytes),
            "bwd_bytes": fmt_bytes(self.bwd_bytes),
            "bytes": fmt_bytes(self.total_bytes),
            "pkt_size": fmt_size(round(self.fwd_mean_payload if self.fwd_pkts else self.mean_payload)),
            "duration": fmt_duration(self.duration_us),
            "pps": fmt_rate(self.pkts_s, "packets/s"),
            "bps": fmt_byte_rate(self.bytes_s),
            "iat": fmt_duration(self.iat_us),
            "syn": fmt_count(f["syn"], "SYN flag"),
            "rst": fmt_count(f["rst"], "RST flag"),
            "fin": fmt_count(f["fin"], "FIN flag"),
            "psh": _num(f["psh"]),
            "ack": _num(f["ack"]),
            "odd": ", ".join(odd),
            "win": fmt_size(self.win),
            "answers": fmt_count(self.fwd_pkts, "answer"),
            "flagword": self.stray_flags or "",
            "ratio": _num(round_sig(ratio, 2)),
            "units": self.units(),
            "app": self.app or "",
            "category": self.category or "",
            **self.context_fields(),
        }

    # -- host context (what the flow's source and destination did around it) ----------------------------

    def context_fields(self) -> dict[str, str]:
        """Formatted host-context values (empty strings when the flow has no context)."""
        c = self.context or {}
        window = c.get("window_s", 0.0) or 0.0
        dst_rate = c.get("dst_flows", 0.0) / window if window else 0.0
        return {
            "window": f"{_num(round_sig(window, 2))} seconds" if window else "",
            "server": self.service[1] if self.service else "the same host",
            "src_flows": fmt_count(c.get("src_flows", 0.0), "flow"),
            "src_n": _num(c.get("src_flows", 0.0)),
            "src_hosts": fmt_count(c.get("src_hosts", 0.0), "host"),
            "src_addrs": fmt_count(c.get("src_hosts", 0.0), "address", "addresses"),
            "pair_flows": _num(c.get("pair_flows", 0.0)),
            "pair_ports": _num(c.get("pair_ports", 0.0)),
            "pair_ports_n": fmt_count(c.get("pair_ports", 0.0), "port"),
            "pair_pps": fmt_rate(c.get("pair_pps", 0.0), "packets/s"),
            "dst_flows": _num(c.get("dst_flows", 0.0)),
            "dst_srcs": _num(c.get("dst_srcs", 0.0)),
            "dst_rate": fmt_rate(dst_rate, "per second"),
            "pair_noreply": _share(c.get("pair_noreply", 0.0)),
            "pair_reset": _share(c.get("pair_reset", 0.0)),
            "pair_answered": _share(1.0 - c.get("pair_noreply", 0.0)),
        }

    def context_reading(self) -> str | None:
        """Which host-context situation (``templates.CONTEXT``) the flow is in, None without context or when
        its neighbourhood says nothing notable. Read off counts only, never the label."""
        c = self.context
        if not c:
            return None
        g = lambda k: c.get(k, 0.0)  # noqa: E731
        meanings = {m for m, _ in self.interpretation()}
        if self.is_icmp and self.icmp_type == 3 and g("src_hosts") >= 50:
            return "backscatter"
        if self.answers_only and self.svc in T.REFLECTOR_SERVICES and g("dst_srcs") >= 10:
            return "reflected_swarm"
        if g("dst_srcs") >= 50 and g("dst_flows") >= 100 and g("pair_flows") <= 3:
            if self.svc in ("DNS", "mDNS") and self.fwd_bytes > 0 and not self.answers_only:  # a bare SYN is no query
                return "swarm_dns"
            if self.is_icmp and self.icmp_type == 8:
                return "swarm_echo"
            if self.is_tcp and self.fwd_bytes == 0 and self.flags["syn"]:
                return "swarm_syn"
            if self.stray_flags:
                return "swarm_stray"
            if self.is_udp:
                return "swarm_udp"
            return "swarm"
        if g("pair_ports") >= 10:
            if meanings & {"fingerprint_probe", "odd_flag_probe"}:
                return "sweep_fingerprint"
            return "sweep"
        if self.host_sweep:
            return "host_sweep"
        if self.stray_flags and g("pair_flows") >= 20:
            return "repeat_stray"
        # Sentences about requests, headers and passwords need payload from the client (a SYN flood to a web
        # server sends none); see packetclip.language.faithfulness.
        if self.svc in T.LOGIN_SERVICES and g("pair_flows") >= 3 and self.is_tcp and self.fwd_bytes > 0:
            return "repeat_login"
        if self.mqtt_login and g("pair_flows") >= 3:
            return "repeat_login"
        if self.syn_only and g("pair_flows") >= 20:
            return "repeat_syn"
        if (self.is_tcp and self.svc in T.WEB_SERVICES and g("pair_flows") >= 20 and self.duration_us >= 5e6
                and self.fwd_bytes > 0 and self.bwd_bytes == 0 and _is_slow(self)):
            return "hold_many_request" if self.full_header_possible else "hold_many"
        if self.svc in T.WEB_SERVICES and g("pair_flows") >= 20 and self.fwd_bytes > 0 and self.bwd_bytes > 0:
            # Error-page-sized answers are checks of pages; larger ones are pages built and sent back.
            return "repeat_web" if self.bwd_bytes <= T.ERROR_PAGE_MAX else "repeat_web_page"
        if g("pair_flows") >= 20:
            return "repeat_pair"
        if (g("src_flows") <= 20 and g("pair_flows") <= 5 and g("dst_srcs") < 50
                and not (self.pkts_s >= 100 and self.pkts >= 3)):
            return "quiet"
        return None

    # -- situations (which templates are true of this flow), with salience weights --------------------

    def service_situation(self) -> str:
        if self.is_icmp:
            return "icmp"
        if self.is_tcp or self.is_udp:
            suffix = "tcp" if self.is_tcp else "udp"
            if self.server_port == 0:
                return "port_zero"
            if self.answers_only and self.service:
                return "from_udp"
            return f"known_{suffix}" if self.service else f"unknown_{suffix}"
        return "other_proto"

    @property
    def syn_only(self) -> bool:
        """The sender only asked to connect: SYN, no payload, at most a retry."""
        return self.is_tcp and self.flags["syn"] > 0 and self.fwd_pkts <= 2 and self.fwd_bytes == 0

    def units(self) -> str:
        """What the flow's packets are, for rate sentences ("pings", "datagrams", "handshake requests")."""
        if self.is_icmp and self.icmp_type == 8:
            return "pings"
        if self.is_udp:
            return "datagrams"
        if self.syn_only:
            return "handshake requests"
        return "packets"

    def interpretation(self) -> list[tuple[str, float]]:
        """What the exchange amounts to, when its counts, flags and service make that clear: [(situation, weight)]."""
        svc, f = self.svc, self.flags
        out: list[tuple[str, float]] = []
        if self.is_icmp and self.icmp_type == 3:
            out.append(("unreachable_error", 1.0))
        if self.is_icmp and self.icmp_type == 8:
            out.append(("big_ping", 1.0) if self.fwd_mean_payload >= 200 else ("ping", 1.0))
            if self.fwd_mean_payload >= 200:
                out.append(("ping", 1.0))
        if self.answers_only:
            # A service's answers with no request in the flow: reflected traffic, never a query or a probe.
            if svc in T.REFLECTOR_SERVICES and self.fwd_mean_payload >= 400 and self._ctx("dst_srcs") >= 10:
                # Large answers from many servers at once: amplified replies (one server alone says less).
                out.append(("big_reflected_answer", 2.0))
            out.append(("reflected_answer", 1.0))
            return out
        # A DNS message has a 12-byte header; an emptier datagram to port 53 is no query.
        dns = self.is_udp and svc == "DNS" and self.fwd_pkts <= 2 and self.fwd_mean_payload >= 12
        if dns:
            out.append(("dns_query", 1.0) if self.bwd_pkts else ("dns_unanswered", 1.0))
        if self.is_udp and not self.bwd_pkts and not dns:
            out.append(("blind_datagram", 1.0) if self.fwd_bytes else ("empty_datagram", 1.0))
        if not self.is_tcp:
            return out
        if self.stray_flags:
            out.append(("stray_segment", 2.0))
        if self.host_sweep:
            out.append(("host_probe", 3.0))   # the context says what the probe is for; outweighs window readings
        if (self.duration_us >= 5e6 and self.iat_us >= 1e6 and self.fwd_pkts >= 3
                and 0 < self.fwd_mean_payload <= 120 and svc in T.WEB_SERVICES and self.bwd_bytes == 0):
            # A web request that trickles in and is never answered: the server is still waiting for its end.
            out.append(("slow_hold", 1.0))
        elif svc in T.LOGIN_SERVICES and f["psh"] >= 2 and self.fwd_pkts >= 3 and self.bwd_pkts >= 3 \
                and self.duration_us < 60e6:
            out.append(("login_session", 1.0))
        elif (svc in T.WEB_SERVICES and self.duration_us >= 2e6 and self.bwd_pkts >= 4 and self.bwd_bytes > 0
              and self.bwd_bytes / self.bwd_pkts <= 200 and 0 < self.fwd_bytes <= self.fwd_max):
            out.append(("slow_answer", 1.5))
        elif svc in T.WEB_SERVICES and 0 < self.bwd_bytes <= T.ERROR_PAGE_MAX and self.fwd_pkts <= 12 \
                and self.duration_us < 10e6 and self.fwd_bytes > 0:
            out.append(("web_request", 1.0))
        elif svc in T.WEB_SERVICES and self.bwd_bytes > T.ERROR_PAGE_MAX and self.duration_us < 10e6 \
                and self.fwd_bytes > 0:
            out.append(("web_page", 1.0))
        elif self.mqtt_login:
            out.append(("mqtt_login", 1.5))
        elif (svc not in T.WEB_SERVICES and svc not in T.LOGIN_SERVICES and f["syn"] and self.bwd_bytes > 0
              and self.fwd_pkts <= 8 and self.duration_us < 10e6):
            out.append(("banner_read", 1.0))
        if f["urg"] + f["ece"] + f["cwr"] > 0 and self.fwd_pkts <= 3:
            out.append(("odd_flag_probe", 1.0))
        if self.syn_only and self.win in T.OS_PROBE_WINDOWS:
            out.append(("fingerprint_probe", 2.0))   # specific: outweighs the generic half-open reading
        elif self.syn_only and (0 < self.win < 512 or self.win in T.SCANNER_WINDOWS):
            out.append(("crafted_syn", 0.5))
        if self.syn_only and f["rst"] and self.bwd_pkts:
            out.append(("closed_probe", 1.0))
        elif self.syn_only and not self.bwd_pkts:
            out.append(("half_open", 1.0))
        elif self.syn_only and f["syn"] >= 2 and self.bwd_pkts and not f["rst"]:
            out.append(("abandoned_handshake", 1.0))
        return out

    def situations(self) -> dict[str, list[tuple[str, float]]]:
        """Family -> [(situation, weight)] of the templates that are true of this flow."""
        f = self.flags
        out: dict[str, list[tuple[str, float]]] = {}

        flags: list[tuple[str, float]] = []
        if self.is_tcp:
            if f["urg"] + f["ece"] + f["cwr"] > 0:
                flags.append(("odd_flags", 2.0))
            if self.win > 0:
                flags.append(("window", 0.6))
            if f["syn"] and not self.bwd_pkts and not f["ack"]:
                flags.append(("syn_unanswered", 2.0))
            elif f["syn"] and f["rst"] and self.fwd_pkts <= 2 and self.bwd_pkts:
                flags.append(("syn_rst", 2.0))
            elif f["syn"] >= 2 and self.fwd_pkts == 1 and self.bwd_pkts and not f["rst"]:
                flags.append(("syn_ack_abandoned", 2.0))
            elif f["syn"] and f["fin"] and self.pkts >= 4:
                flags.append(("full_session", 1.0))
            elif f["syn"] and not f["fin"] and not f["rst"] and self.pkts >= 3:
                flags.append(("open_no_close", 1.0))
            if f["rst"] and self.pkts > 3:
                flags.append(("reset", 1.0))
            if not flags:
                flags.append(("plain_tcp", 0.5))
        else:
            flags.append(("no_flags", 0.6))
        out["flags"] = flags

        volume: list[tuple[str, float]] = []
        if self.pkts == 1:
            volume.append(("single", 1.5) if self.total_bytes else ("single_empty", 1.5))
        if self.total_bytes == 0 and self.pkts:
            volume.append(("empty_payload", 2.0))
        if self.mean_payload >= 1000:
            volume.append(("large_packets", 2.0))
        if self.total_bytes >= 1e6:
            volume.append(("bulk", 1.5))
        if self.bwd_pkts:
            volume.append(("exchange", 1.0))
        elif self.fwd_pkts >= 2:
            volume.append(("one_way", 1.0))
        out["volume"] = volume

        if self.duration_us <= 0 or self.pkts_s < 0:
            out["rate"] = [("instant", 0.8)]
            out["timing"] = [("instant", 0.8)]
        else:
            if self.fwd_pkts == 1 and self.bwd_pkts == 1:
                # Two packets: their "rate" is only the inverse of the round trip, so say that.
                out["rate"] = [("round_trip", 0.8)]
            elif self.pkts_s >= 1000 and self.pkts >= 3:
                out["rate"] = [("high", 2.0)]
            elif self.pkts_s < 1:
                out["rate"] = [("low", 2.0)]
            else:
                out["rate"] = [("moderate", 0.8)]
            if self.duration_us < 1e6:
                out["timing"] = [("short", 0.8)]
            elif self.duration_us < 10e6:
                out["timing"] = [("medium", 1.0)]
            else:
                out["timing"] = [("long", 2.0)]

        if not self.bwd_pkts:
            out["direction"] = [("no_reply", 2.0)]
        elif self.fwd_bytes and self.bwd_bytes >= 2 * self.fwd_bytes:
            out["direction"] = [("amplified" if self.is_udp else "download", 1.5)]
        elif not self.fwd_bytes and not self.bwd_bytes:
            out["direction"] = [("no_payload", 1.0)]
        elif not self.bwd_bytes:
            out["direction"] = [("ack_only", 1.2)]
        elif self.fwd_bytes >= 3 * self.bwd_bytes:
            out["direction"] = [("upload", 1.0)]
        else:
            out["direction"] = [("balanced", 0.6)]
        return {k: v for k, v in out.items() if v}

    def supports(self, word: str) -> bool | None:
        """Whether the flow shows (True) or contradicts (False) what a concept names; None: it cannot tell."""
        rule = CONCEPT_EVIDENCE.get(word.lower())
        if rule is None:
            return None
        answer = rule(self)
        return None if answer is None else bool(answer)


def _share(x: float) -> str:
    """A fraction in words: 'none', 'almost none', 'a few', 'about half', 'most', 'almost all', 'all'."""
    if x <= 0:
        return "none"
    if x >= 1:
        return "all"
    if x < 0.05:
        return "almost none"
    if x < 0.35:
        return "a few"
    if x <= 0.65:
        return "about half"
    if x < 0.95:
        return "most"
    return "almost all"


def _is_slow(f: "FlowFacts") -> bool:
    """A trickle: under 10 packets/s over more than a second (measured rates only)."""
    return 0 <= f.pkts_s < 10 and f.duration_us > 1e6


def _flag(f: "FlowFacts", name: str) -> bool | None:
    if not f.is_tcp or not f.flags[name]:
        return False
    return True if f.total_bytes == 0 else None


def _fast(f: "FlowFacts", heavy: bool = False) -> bool | None:
    """Rate evidence: True at 1,000 packets/s or more (or, with ``heavy``, near-MTU packets), False for a
    trickle, None when one flow cannot tell (most single-packet flows)."""
    if _is_slow(f):
        return False
    if (f.pkts_s >= 1000 and f.pkts >= 3) or (heavy and f.mean_payload >= 1000):
        return True
    if f.context and f.context.get("window_s") and f.context.get("dst_flows", 0) / f.context["window_s"] >= 100:
        return True   # the destination receives 100 or more flows per second
    return None


# Concepts that name a protocol, flag or service, or a behaviour a single flow can show or rule out: kept only
# when the flow does not contradict them (a "telnet" concept on an FTP flow, "syn" on UDP, "flood" or
# "volume" on a flow that trickles a few bytes every few seconds, "amplification" without a larger reply).
# A rule answers True (the flow shows it), False (the flow contradicts it) or None (it cannot tell).
CONCEPT_EVIDENCE = {
    "flood": lambda f: _fast(f),
    "volume": lambda f: _fast(f, heavy=True),
    "bandwidth": lambda f: _fast(f, heavy=True),
    "saturation": lambda f: _fast(f, heavy=True),
    "amplification": lambda f: not f.is_tcp and (f.bwd_bytes >= 2 * f.fwd_bytes > 0
                                                 or (f.answers_only and f.fwd_mean_payload >= 400)),
    "reflection": lambda f: not f.is_tcp and (bool(f.bwd_pkts) or f.answers_only),
    "slow": lambda f: _is_slow(f),
    "password": lambda f: f.svc in T.LOGIN_SERVICES or f.svc in T.WEB_SERVICES or f.mqtt_login,
    "login": lambda f: f.svc in T.LOGIN_SERVICES or f.svc in T.WEB_SERVICES or f.mqtt_login,
    "echo": lambda f: f.is_icmp and f.icmp_type in (0, 8),
    "query": lambda f: f.svc in ("DNS", "mDNS", "DNS-over-TLS"),
    "resolver": lambda f: f.svc in ("DNS", "mDNS", "DNS-over-TLS"),
    "hostname": lambda f: f.svc in ("DNS", "mDNS", "DNS-over-TLS"),
    "handshake": lambda f: f.is_tcp,
    "state": lambda f: f.is_tcp,
    "stateful": lambda f: f.is_tcp,
    "table": lambda f: f.is_tcp,
    "wordlist": lambda f: f.svc in T.WEB_SERVICES or f.svc in ("DNS",) or f.svc in T.LOGIN_SERVICES,
    "bucket": lambda f: f.svc in ("HTTP", "HTTPS", "HTTP-alt", "HTTPS-alt"),
    "cloud": lambda f: f.svc in ("HTTP", "HTTPS", "HTTP-alt", "HTTPS-alt"),
    "storage": lambda f: f.svc in ("HTTP", "HTTPS", "HTTP-alt", "HTTPS-alt"),
    "tcp": lambda f: f.is_tcp,
    "udp": lambda f: f.is_udp,
    "icmp": lambda f: f.is_icmp,
    "ping": lambda f: f.is_icmp,
    # A flag concept fits a flow that carries the flag; it is what the flow shows when no payload travels.
    "syn": lambda f: _flag(f, "syn"),
    "ack": lambda f: _flag(f, "ack"),
    "rst": lambda f: _flag(f, "rst"),
    "fin": lambda f: _flag(f, "fin"),
    "ssh": lambda f: f.svc == "SSH",
    "telnet": lambda f: f.svc == "Telnet",
    "ftp": lambda f: f.svc in ("FTP", "FTP-data"),
    "http": lambda f: f.svc in ("HTTP", "HTTP-alt", "HTTPS", "HTTPS-alt"),
    "https": lambda f: f.svc in ("HTTPS", "HTTPS-alt"),
    "ssl": lambda f: f.svc in ("HTTPS", "HTTPS-alt", "MQTT-TLS", "SMTPS", "IMAPS", "POP3S") or bool(f.encrypted),
    "tls": lambda f: f.svc in ("HTTPS", "HTTPS-alt", "MQTT-TLS", "SMTPS", "IMAPS", "POP3S") or bool(f.encrypted),
    "renegotiation": lambda f: f.svc in ("HTTPS", "HTTPS-alt") or bool(f.encrypted),
    "dns": lambda f: f.svc in ("DNS", "mDNS", "DNS-over-TLS"),
    "ntp": lambda f: f.svc == "NTP",
    "smtp": lambda f: f.svc in ("SMTP", "SMTPS"),
    "mysql": lambda f: f.svc == "MySQL",
    "ldap": lambda f: f.svc == "LDAP",
    "kerberos": lambda f: f.svc == "Kerberos",
    "smb": lambda f: f.svc in ("SMB", "NetBIOS"),
    "samba": lambda f: f.svc in ("SMB", "NetBIOS"),
    "netbios": lambda f: f.svc in ("SMB", "NetBIOS"),
    "rdp": lambda f: f.svc == "RDP",
    "vnc": lambda f: f.svc == "VNC",
    "mqtt": lambda f: f.svc in ("MQTT", "MQTT-TLS"),
    "coap": lambda f: f.svc == "CoAP",
    "bonjour": lambda f: f.svc == "mDNS",
    "terminal": lambda f: f.svc in ("SSH", "Telnet"),
}
