"""One label map for every dataset: raw labels -> the paper's 10 fine classes -> the 4 missions.

PacketCLIP (ACI-IoT-2023) detects four missions from ten fine classes. CIC-IDS2017/2018 use other names
for some of the same attacks; they are mapped onto the fine classes where the attack is the same
(``DoS Slowloris`` is Slowloris, ``SSH-Patator`` is a dictionary attack). Attacks that have no fine class
keep their own (canonical) name, and still get a mission when the mission is clear (``DoS Hulk`` is DoS).

``normalise_label`` ignores case, whitespace, dashes and underscores (and the broken en-dash of the
original CIC-IDS2017 CSVs). ``<attack> - Attempted`` labels (the improved CIC-IDS2017 of Engelen et al.,
2021: the attack was launched but carried no malicious payload, e.g. the target never answered) keep the
suffix, so they stay separable from real attacks; their mission is the attack's mission by default
(the attacker's intent), or ``Benign``/``None`` on request (``mission_of(..., attempted=...)``).

| Raw label (any dataset)                                   | Label                      | Mission        |
|-----------------------------------------------------------|----------------------------|----------------|
| Benign, BENIGN                                            | Benign                     | Benign         |
| OS Scan                                                   | OS Scan                    | Reconnaissance |
| Vulnerability Scan                                        | Vulnerability Scan         | Reconnaissance |
| Port Scan, Portscan, PortScan, Infiltration - Portscan    | Port Scan                  | Reconnaissance |
| ICMP Flood                                                | ICMP Flood                 | DoS            |
| Slowloris, DoS Slowloris, DoS attacks-Slowloris           | Slowloris                  | DoS            |
| SYN Flood                                                 | SYN Flood                  | DoS            |
| UDP Flood, DDOS attack-LOIC-UDP                           | UDP Flood                  | DoS            |
| DNS Flood                                                 | DNS Flood                  | DoS            |
| Dictionary Attack, SSH-Patator, FTP-Patator,              | Dictionary Attack          | Brute Force    |
|   SSH-Bruteforce, FTP-BruteForce                          |                            |                |
| DDoS                                                      | DDoS                       | DoS            |
| DoS Hulk, DoS attacks-Hulk                                | DoS Hulk                   | DoS            |
| DoS GoldenEye, DoS attacks-GoldenEye                      | DoS GoldenEye              | DoS            |
| DoS Slowhttptest, DoS attacks-SlowHTTPTest                | DoS Slowhttptest           | DoS            |
| DDoS attacks-LOIC-HTTP                                    | DDoS LOIC-HTTP             | DoS            |
| DDOS attack-HOIC                                          | DDoS HOIC                  | DoS            |
| Web Attack - Brute Force, Brute Force -Web                | Web Attack - Brute Force   | Brute Force    |
| Web Attack - XSS, Brute Force -XSS                        | Web Attack - XSS           | (none)         |
| Web Attack - SQL Injection, SQL Injection                 | Web Attack - SQL Injection | (none)         |
| Botnet, Bot                                               | Botnet                     | (none)         |
| Infiltration, Infilteration                               | Infiltration               | (none)         |
| Heartbleed                                                | Heartbleed                 | (none)         |
| ARP Spoofing                                              | ARP Spoofing               | (none)         |
| <attack> - Attempted                                      | <label> - Attempted        | see above      |
| anything else                                             | itself, whitespace tidied  | (none)         |

Beyond the paper, the lab makes 9 more classes under the same missions (``EXTENDED_CLASSES``; the
paper's 10 plus these are ``ALL_CLASSES``): the attacks real networks see most that the paper's ten miss.
Datasets' own names for them map onto them where the attack is the same (CIC-DDoS2019's ``DrDoS_DNS`` is a
reflection/amplification flood). CIC-IDS2017/2018's HTTP-flood tools keep their own labels (``DoS Hulk``,
``DoS GoldenEye``, ``DDoS LOIC-HTTP``, ``DDoS HOIC``, ``DDoS``) so results stay reported per tool, and
``lab_class_of`` names the lab class that models them (``HTTP Flood``):

| Lab class                 | Mission        | Raw labels mapped onto it / CIC labels it models (``lab_class_of``) |
|---------------------------|----------------|---------------------------------------------------------------------|
| HTTP Flood                | DoS            | HTTPFlood, HTTP GET Flood / DoS Hulk, DoS GoldenEye, DDoS LOIC-HTTP, |
|                           |                | DDoS HOIC, DDoS (CIC-IDS2017's DDoS is LOIC's HTTP flood)            |
| Reflection Amplification  | DoS            | DNS/NTP/SSDP/CLDAP Amplification, DrDoS_DNS, DrDoS_NTP, DrDoS_SSDP, |
|                           |                | DrDoS_LDAP, DrDoS_SNMP (CIC-DDoS2019)                                |
| ACK Flood                 | DoS            | TCP ACK Flood, ACK/RST Flood, RST Flood                             |
| Slow HTTP                 | DoS            | Slow POST, Slow Read, RUDY / DoS Slowhttptest                       |
| UDP Scan                  | Reconnaissance | UDP Port Scan                                                       |
| Ping Sweep                | Reconnaissance | Host Discovery, Ping Scan                                           |
| Service Scan              | Reconnaissance | Service Detection, Version Scan                                     |
| HTTP Brute Force          | Brute Force    | HTTP Login Brute Force / Web Attack - Brute Force                   |
| IoT Brute Force           | Brute Force    | MQTT Brute Force, Telnet Brute Force                                |

"(none)" means the label is outside the four missions: ``mission_of`` returns ``None`` so callers drop
or keep such rows deliberately instead of silently folding, say, a botnet into Benign.
"""

from __future__ import annotations

import re

FINE_CLASSES: tuple[str, ...] = (
    "Benign",
    "OS Scan",
    "Vulnerability Scan",
    "Port Scan",
    "ICMP Flood",
    "Slowloris",
    "SYN Flood",
    "UDP Flood",
    "DNS Flood",
    "Dictionary Attack",
)

MISSIONS: tuple[str, ...] = ("Benign", "DoS", "Reconnaissance", "Brute Force")

BENIGN, DOS, RECON, BRUTE = MISSIONS

# The 10 fine classes -> mission.
FINE_TO_MISSION: dict[str, str] = {
    "Benign": BENIGN,
    "OS Scan": RECON,
    "Vulnerability Scan": RECON,
    "Port Scan": RECON,
    "ICMP Flood": DOS,
    "Slowloris": DOS,
    "SYN Flood": DOS,
    "UDP Flood": DOS,
    "DNS Flood": DOS,
    "Dictionary Attack": BRUTE,
}

# The lab's classes beyond the paper's ten (same four missions); see the module docstring.
EXTENDED_TO_MISSION: dict[str, str] = {
    "HTTP Flood": DOS,
    "Reflection Amplification": DOS,
    "ACK Flood": DOS,
    "Slow HTTP": DOS,
    "UDP Scan": RECON,
    "Ping Sweep": RECON,
    "Service Scan": RECON,
    "HTTP Brute Force": BRUTE,
    "IoT Brute Force": BRUTE,
}
EXTENDED_CLASSES: tuple[str, ...] = tuple(EXTENDED_TO_MISSION)
ALL_CLASSES: tuple[str, ...] = FINE_CLASSES + EXTENDED_CLASSES

# Labels of other datasets that keep their own name but are modelled by a lab class (``lab_class_of``).
_MODELLED_BY: dict[str, str] = {
    "DoS Hulk": "HTTP Flood",
    "DoS GoldenEye": "HTTP Flood",
    "DDoS LOIC-HTTP": "HTTP Flood",
    "DDoS HOIC": "HTTP Flood",
    "DDoS": "HTTP Flood",
    "DoS Slowhttptest": "Slow HTTP",
    "Web Attack - Brute Force": "HTTP Brute Force",
}

# Canonical labels that are not fine classes but whose mission is clear.
_EXTRA_MISSIONS: dict[str, str] = {
    "DDoS": DOS,
    "DoS Hulk": DOS,
    "DoS GoldenEye": DOS,
    "DoS Slowhttptest": DOS,
    "DDoS LOIC-HTTP": DOS,
    "DDoS HOIC": DOS,
    "Web Attack - Brute Force": BRUTE,
}

# Canonical labels with no mission (listed so their spelling is canonical whatever the source).
_NO_MISSION: tuple[str, ...] = (
    "Web Attack - XSS",
    "Web Attack - SQL Injection",
    "Botnet",
    "Infiltration",
    "Heartbleed",
    "ARP Spoofing",
)

# Raw spellings (by key, see ``_key``) -> canonical label. Every canonical label maps to itself too.
_ALIASES: dict[str, tuple[str, ...]] = {
    "Benign": ("BENIGN", "Normal"),
    "Port Scan": ("Portscan", "PortScan", "Infiltration - Portscan", "Port Scanning"),
    "OS Scan": ("OS Scanning", "OS Fingerprinting"),
    "Vulnerability Scan": ("Vulnerability Scanning", "VulnScan"),
    "Slowloris": ("DoS Slowloris", "DoS slowloris", "DoS attacks-Slowloris"),
    "UDP Flood": ("DDOS attack-LOIC-UDP", "DDoS attacks-LOIC-UDP", "UDPFlood"),
    "SYN Flood": ("SYNFlood", "TCP SYN Flood"),
    "ICMP Flood": ("ICMPFlood",),
    "DNS Flood": ("DNSFlood",),
    "Dictionary Attack": (
        "SSH-Patator",
        "FTP-Patator",
        "SSH-Bruteforce",
        "SSH-BruteForce",
        "FTP-BruteForce",
        "Dictionary",
    ),
    "DoS Hulk": ("DoS attacks-Hulk",),
    "DoS GoldenEye": ("DoS attacks-GoldenEye",),
    "DoS Slowhttptest": ("DoS attacks-SlowHTTPTest", "DoS SlowHTTPTest"),
    "DDoS LOIC-HTTP": ("DDoS attacks-LOIC-HTTP", "DDoS attack-LOIC-HTTP"),
    "DDoS HOIC": ("DDOS attack-HOIC", "DDoS attacks-HOIC"),
    "HTTP Flood": ("HTTPFlood", "HTTP GET Flood", "HTTP POST Flood"),
    "Reflection Amplification": ("DNS Amplification", "NTP Amplification", "SSDP Amplification",
                                 "CLDAP Amplification", "Amplification", "DrDoS_DNS", "DrDoS_NTP", "DrDoS_SSDP",
                                 "DrDoS_LDAP", "DrDoS_SNMP"),
    "ACK Flood": ("TCP ACK Flood", "ACK/RST Flood", "RST Flood"),
    "Slow HTTP": ("Slow POST", "Slow Read", "RUDY"),
    "UDP Scan": ("UDP Port Scan",),
    "Ping Sweep": ("Host Discovery", "Ping Scan"),
    "Service Scan": ("Service Detection", "Version Scan"),
    "HTTP Brute Force": ("HTTP Login Brute Force",),
    "IoT Brute Force": ("MQTT Brute Force", "Telnet Brute Force"),
    "Web Attack - Brute Force": ("Brute Force -Web", "Brute Force-Web", "Web Attack Brute Force"),
    "Web Attack - XSS": ("Brute Force -XSS", "Brute Force-XSS", "Web Attack XSS"),
    "Web Attack - SQL Injection": ("SQL Injection", "Web Attack - Sql Injection"),
    "Botnet": ("Bot", "Botnet ARES", "Bot ARES"),
    "Infiltration": ("Infilteration", "Infiltration - Dropbox Download", "Infiltration - Cool disk"),
    "ARP Spoofing": ("ARP Spoof", "ARPSpoofing"),
}

_ATTEMPTED_SUFFIX = " - Attempted"
_ATTEMPTED_RE = re.compile(r"[\s\-_\u2013\u2014\ufffd\x96]*attempted\s*$", re.IGNORECASE)
_KEY_DROP = re.compile(r"[^0-9a-z]+")


def _key(raw: str) -> str:
    """Comparison key: lower case, letters and digits only."""
    return _KEY_DROP.sub("", raw.lower())


def _build_lookup() -> dict[str, str]:
    lookup: dict[str, str] = {}
    canonical = list(ALL_CLASSES) + list(_EXTRA_MISSIONS) + list(_NO_MISSION)
    for name in canonical:
        lookup[_key(name)] = name
    for name, aliases in _ALIASES.items():
        for alias in aliases:
            lookup[_key(alias)] = name
    return lookup


_LOOKUP = _build_lookup()
_MISSION_OF = {**FINE_TO_MISSION, **EXTENDED_TO_MISSION, **_EXTRA_MISSIONS}


def normalise_label(raw: str) -> str:
    """Map a dataset's raw label onto our canonical spelling (a fine class where one fits).

    Unknown labels are returned with whitespace tidied, so nothing is silently merged.
    """
    text = " ".join(str(raw).replace("\ufffd", "-").replace("\x96", "-").split())
    attempted = False
    match = _ATTEMPTED_RE.search(text)
    if match and match.start() > 0:
        attempted = True
        text = text[: match.start()].strip()
    canonical = _LOOKUP.get(_key(text), text)
    return canonical + _ATTEMPTED_SUFFIX if attempted else canonical


def is_attempted(label: str) -> bool:
    """True for ``<attack> - Attempted`` labels (the attack carried no malicious payload)."""
    return normalise_label(label).endswith(_ATTEMPTED_SUFFIX)


def mission_of(label: str, *, attempted: str = "attack") -> str | None:
    """The mission of a (raw or canonical) label, or ``None`` when it is outside the 4 missions.

    ``attempted`` decides ``<attack> - Attempted`` labels: ``"attack"`` (the attack's own mission,
    default), ``"benign"`` (``Benign``: no malicious payload was delivered) or ``"none"``.
    """
    if attempted not in ("attack", "benign", "none"):
        raise ValueError(f"attempted must be 'attack', 'benign' or 'none', not {attempted!r}")
    canonical = normalise_label(label)
    if canonical.endswith(_ATTEMPTED_SUFFIX):
        if attempted == "benign":
            return BENIGN
        if attempted == "none":
            return None
        canonical = canonical[: -len(_ATTEMPTED_SUFFIX)]
    return _MISSION_OF.get(canonical)


def fine_class_of(label: str) -> str | None:
    """The fine class of a label, or ``None`` when it is not one of the paper's 10."""
    canonical = normalise_label(label)
    return canonical if canonical in FINE_TO_MISSION else None


def lab_class_of(label: str) -> str | None:
    """The lab class (one of ``ALL_CLASSES``) that produces or models a label, or ``None``.

    ``DoS Hulk`` -> ``HTTP Flood``: what a detector trained on the lab's ``--classes all`` saw of that attack.
    """
    canonical = normalise_label(label)
    if canonical.endswith(_ATTEMPTED_SUFFIX):
        canonical = canonical[: -len(_ATTEMPTED_SUFFIX)]
    if canonical in _MISSION_OF and canonical in ALL_CLASSES:
        return canonical
    return _MODELLED_BY.get(canonical)


def label_map_table() -> list[tuple[str, str, str]]:
    """Rows ``(raw spelling, label, mission)`` of the whole map, for README/--help tables.

    Mission is ``""`` where the label has no mission.
    """
    rows: list[tuple[str, str, str]] = []
    canonical = list(ALL_CLASSES) + list(_EXTRA_MISSIONS) + list(_NO_MISSION)
    for name in canonical:
        raws = (name,) + _ALIASES.get(name, ())
        for raw in raws:
            rows.append((raw, name, _MISSION_OF.get(name, "")))
    return rows
