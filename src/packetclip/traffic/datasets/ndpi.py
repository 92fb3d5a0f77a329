"""nDPI ground truth: the per-flow lines of ``ndpiReader`` output (``<capture>.out``) as a table.

A flow line looks like::

    \t3\tTCP 192.168.2.126:49372 <-> 14.136.136.108:80 [VLAN: 7][proto: 7.295/HTTP.1kxun][IP: 0/Unknown]
    [ClearText][Confidence: DPI]...[cat: Streaming/17][3 pkts/1752 bytes <-> 33 pkts/144786 bytes]...
    [Hostname/SNI: hkbn.content.1kxun.com]...[Risk: ** Known Proto on Non Std Port **** ... **]...

IPv6 endpoints are bracketed (``[2a00::1]:443``); ``->`` marks a flow seen in one direction only.
``[proto: GTP:91/TLS]`` names the tunnel nDPI decapsulated. nDPI keeps one flow per 5-tuple and VLAN
for the whole capture (no idle/active timeouts), so its counts are whole-conversation totals. The first
endpoint is the side that sent the first packet; ``c2s_*`` counts are that side's.

Flows nDPI could not classify are listed again after an ``Undetected flows:`` heading with their own
numbering; they are returned too, with ``undetected=True``. Other sections (per-protocol totals, JA3
host stats, ...) are skipped. A line that starts like a flow line but cannot be parsed is counted in
``df.attrs["packetclip_report"]["unparsed_lines"]``, never fatal.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from packetclip.errors import DatasetFormatError

NDPI_COLUMNS: tuple[str, ...] = (
    "capture", "flow_index", "undetected", "proto", "ip_proto", "src_ip", "src_port", "dst_ip", "dst_port",
    "bidirectional", "vlan", "tunnel", "app_master", "app", "category", "encrypted", "confidence",
    "c2s_packets", "c2s_bytes", "s2c_packets", "s2c_bytes", "risks", "hostname",
)

# ndpiReader's transport names -> IP protocol numbers (it prints unknown protocols as the number).
IP_PROTOCOL_NUMBERS: dict[str, int] = {
    "ICMP": 1, "IGMP": 2, "TCP": 6, "UDP": 17, "GRE": 47, "ESP": 50, "AH": 51, "ICMPV6": 58,
    "IPIP": 4, "IPV6": 41, "OSPF": 89, "PIM": 103, "VRRP": 112, "PGM": 113, "L2TP": 115, "SCTP": 132,
}

_ENDPOINT = r"(\[[^\]\s]*\]|[^\s\[]+):(\d{1,5})"
_FLOW_RE = re.compile(r"^\t(\d{1,18})\t(\S+) " + _ENDPOINT + r" (<->|->) " + _ENDPOINT + r"(?: (.*))?$")
_CANDIDATE_RE = re.compile(r"^\t\d+\t\S")
_VLAN_RE = re.compile(r"\[VLAN: (\d{1,9})\]")
_PROTO_RE = re.compile(r"\[proto: (?:([A-Za-z0-9_]+):)?([\d.]+)/([^\]]*)\]")
_CAT_RE = re.compile(r"\[cat: ([^\]]*?)/\d+\]")
_CONF_RE = re.compile(r"\[Confidence: ([^\]]*)\]")
_PKTS_RE = re.compile(r"\[(\d{1,18}) pkts/(\d{1,18}) bytes (<->|->) (\d{1,18}) pkts/(\d{1,18}) bytes\]")
_RISK_RE = re.compile(r"\[Risk: ([^\]]*)\]")
_RISK_ITEM_RE = re.compile(r"\*\*\s*(.*?)\s*\*\*")
_HOST_RE = re.compile(r"\[Hostname/SNI: (.*?)\](?=\[|\s*$)")
_MARKERS = ("DPI Packets", "Guessed flow protos", "Confidence ", "Num dissector calls", "Undetected flows:")

RISK_SEPARATOR = "; "


def read_ndpi_result(path: str | Path) -> pd.DataFrame:
    """Parse one ndpiReader output file into one row per flow (columns ``NDPI_COLUMNS``).

    ``risks`` is the list of nDPI risk names joined by ``"; "`` ("" when none); ``hostname`` is the
    Hostname/SNI field ("" when absent); ``encrypted`` is ``True``/``False`` (``<NA>`` if missing);
    ``app_master``/``app`` come from ``[proto: M.A/Master.App]`` (both the same name for ``[proto: N/Name]``).
    An empty file is a valid capture without flows. Raises :class:`DatasetFormatError` for a file that is
    unreadable or not ndpiReader output at all.
    """
    rows, unparsed = _parse_file(Path(path))
    df = _frame(rows)
    df.attrs["packetclip_report"] = {
        "file": str(path),
        "flows": len(df),
        "unparsed_lines": len(unparsed),
        "unparsed_line_numbers": unparsed[:20],
    }
    return df


def _parse_file(path: Path) -> tuple[list[dict], list[int]]:
    """Flow rows of one file (each with its ``capture``) and the line numbers that did not parse."""
    capture = path.name[: -len(".out")] if path.name.endswith(".out") else path.name
    rows: list[dict] = []
    unparsed: list[int] = []
    saw_marker = False
    non_blank = 0
    undetected = False
    try:
        handle = open(path, "r", encoding="utf-8", errors="replace", newline="")
    except IsADirectoryError as err:
        raise DatasetFormatError("is a directory, not an ndpiReader output file", path=str(path)) from err
    except OSError as err:
        raise DatasetFormatError(f"cannot read file: {err.strerror or err}", path=str(path)) from err
    with handle:
        try:
            for line_number, line in enumerate(handle, start=1):
                line = line.rstrip("\r\n")
                if not line.strip():
                    continue
                non_blank += 1
                if line.startswith("Undetected flows:"):
                    undetected = True
                    saw_marker = True
                    continue
                if not saw_marker and line.startswith(_MARKERS):
                    saw_marker = True
                if not _CANDIDATE_RE.match(line):
                    continue
                if " -> " not in line and " <-> " not in line:
                    continue  # another section's table row (e.g. JA3 host stats)
                row = _parse_flow_line(line)
                if row is None:
                    unparsed.append(line_number)
                    continue
                row["undetected"] = undetected
                row["capture"] = capture
                rows.append(row)
        except OSError as err:
            raise DatasetFormatError(f"cannot read file: {err.strerror or err}", path=str(path)) from err
    if non_blank and not rows and not saw_marker:
        raise DatasetFormatError("not ndpiReader output (no flow lines, no summary lines)", path=str(path))
    return rows, unparsed


def _frame(rows: list[dict]) -> pd.DataFrame:
    return _typed(pd.DataFrame(rows, columns=list(NDPI_COLUMNS)))


def read_ndpi_results(paths_or_dir, *, progress: bool = True) -> pd.DataFrame:
    """Every ``*.out`` file of a directory (or the given files) as one table, with a progress bar."""
    if isinstance(paths_or_dir, (str, Path)) and Path(paths_or_dir).is_dir():
        files = sorted(Path(paths_or_dir).glob("*.out"))
        if not files:
            raise DatasetFormatError("no ndpiReader .out files in this directory", path=str(paths_or_dir))
    elif isinstance(paths_or_dir, (str, Path)):
        files = [Path(paths_or_dir)]
    else:
        files = [Path(p) for p in paths_or_dir]

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    rows: list[dict] = []
    unparsed = 0
    with Progress(TextColumn("[bold]reading nDPI results"), BarColumn(), MofNCompleteColumn(),
                  disable=not progress, transient=True) as bar:
        for path in bar.track(files, description="ndpi"):
            file_rows, file_unparsed = _parse_file(path)
            rows.extend(file_rows)
            unparsed += len(file_unparsed)
    df = _frame(rows)
    df.attrs["packetclip_report"] = {"files": len(files), "flows": len(df), "unparsed_lines": unparsed}
    return df


def _parse_flow_line(line: str) -> dict | None:
    match = _FLOW_RE.match(line)
    if match is None:
        return None
    index, proto, src, sport, arrow, dst, dport, rest = match.groups()
    rest = rest or ""
    try:
        row = {
            "flow_index": int(index),
            "proto": proto,
            "ip_proto": _ip_proto(proto),
            "src_ip": src.strip("[]"),
            "src_port": int(sport),
            "dst_ip": dst.strip("[]"),
            "dst_port": int(dport),
            "bidirectional": arrow == "<->",
        }
    except ValueError:
        return None
    if row["src_port"] > 65535 or row["dst_port"] > 65535 or (row["ip_proto"] or 0) > 255:
        return None

    vlan = _VLAN_RE.search(rest)
    row["vlan"] = int(vlan.group(1)) if vlan else None
    proto_field = _PROTO_RE.search(rest)
    if proto_field:
        tunnel, ids, names = proto_field.groups()
        row["tunnel"] = tunnel or ""
        if "." in ids and "." in names:
            master, app = names.split(".", 1)
        else:
            master = app = names
        row["app_master"], row["app"] = master, app
    else:
        row["tunnel"], row["app_master"], row["app"] = "", None, None
    category = _CAT_RE.search(rest)
    row["category"] = category.group(1) if category else None
    if "[Encrypted]" in rest:
        row["encrypted"] = True
    elif "[ClearText]" in rest:
        row["encrypted"] = False
    else:
        row["encrypted"] = None
    confidence = _CONF_RE.search(rest)
    row["confidence"] = confidence.group(1) if confidence else None
    packets = _PKTS_RE.search(rest)
    if packets:
        c2s_p, c2s_b, _, s2c_p, s2c_b = packets.groups()
        row.update(c2s_packets=int(c2s_p), c2s_bytes=int(c2s_b), s2c_packets=int(s2c_p), s2c_bytes=int(s2c_b))
    else:
        row.update(c2s_packets=None, c2s_bytes=None, s2c_packets=None, s2c_bytes=None)
    risk = _RISK_RE.search(rest)
    row["risks"] = RISK_SEPARATOR.join(_RISK_ITEM_RE.findall(risk.group(1))) if risk else ""
    host = _HOST_RE.search(rest)
    row["hostname"] = host.group(1) if host else ""
    return row


def _ip_proto(name: str) -> int | None:
    if name.isdigit():
        return int(name) if len(name) <= 3 else 256
    return IP_PROTOCOL_NUMBERS.get(name.upper())


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    ints = ("flow_index", "ip_proto", "src_port", "dst_port", "vlan", "c2s_packets", "c2s_bytes",
            "s2c_packets", "s2c_bytes")
    for column in ints:
        df[column] = pd.array(df[column].tolist(), dtype="Int64")
    for column in ("undetected", "bidirectional", "encrypted"):
        df[column] = pd.array(df[column].tolist(), dtype="boolean")
    for column in ("capture", "proto", "src_ip", "dst_ip", "tunnel", "app_master", "app", "category",
                   "confidence", "risks", "hostname"):
        df[column] = df[column].astype(object)
    return df
