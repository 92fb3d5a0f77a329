"""The three attack missions and the MITRE ATT&CK v15 techniques that ground their knowledge graphs.

Choices (the lab's 10 fine classes are what the graphs must describe):

* DoS (ICMP/SYN/UDP/DNS floods, Slowloris): T1498 Network DoS with .001 Direct Network Flood and
  .002 Reflection Amplification; T1499 Endpoint DoS with .001 OS Exhaustion Flood (SYN/ACK floods),
  .002 Service Exhaustion Flood (HTTP floods, the Slowloris family), .003 Application Exhaustion Flood
  and .004 Application or System Exploitation. All are core.
* Reconnaissance (OS scan, vulnerability scan, port scan): core T1595 Active Scanning with .001 Scanning
  IP Blocks, .002 Vulnerability Scanning, .003 Wordlist Scanning, and T1046 Network Service Discovery
  (port scans). Related: T1018 Remote System Discovery (ping sweeps) and T1592 / T1592.002 Gather Victim
  Host Information / Software (what OS and service fingerprinting is for). T1082 System Information
  Discovery is left out: it is run on an already-compromised host, not over the network.
* Brute Force (dictionary attacks on SSH/FTP/Telnet/HTTP auth): core T1110 with .001 Password Guessing,
  .002 Password Cracking, .003 Password Spraying, .004 Credential Stuffing. Related: T1021.004 SSH
  (the service most dictionary attacks in the lab hit) and T1078 Valid Accounts (what a success yields).

* The lab's classes beyond the paper's ten (HTTP floods, reflection/amplification, ACK/RST floods, slow
  POST/read; UDP scans, ping sweeps, service/version probing; HTTP login and MQTT/Telnet credential guessing)
  fall under the same techniques; IoT credential guessing adds T1078.001 Default Accounts (related), since
  it tries the factory logins of devices. ``CLASS_KNOWLEDGE`` names each class's techniques and the concept
  words that say most about it; every class gets a key concept from its own techniques (see
  ``AttackSource.build``), so its flows' descriptions name a concept of what they are.

Core techniques drive the key concepts (level 0); related ones only widen the associated words of
later levels and weigh half as much.
"""

from __future__ import annotations

from dataclasses import dataclass

from packetclip.errors import PacketClipError


@dataclass(frozen=True)
class MissionSpec:
    """A mission: its CLI key, display label, prompt phrase, and ATT&CK techniques."""

    key: str
    label: str
    phrase: str
    core: tuple[str, ...]
    related: tuple[str, ...] = ()
    # Words that only repeat the label; the graph should add knowledge, not echo the class name.
    label_words: tuple[str, ...] = ()

    @property
    def techniques(self) -> tuple[str, ...]:
        return self.core + self.related


MISSIONS: dict[str, MissionSpec] = {
    "dos": MissionSpec(
        key="dos",
        label="DoS",
        phrase="denial-of-service (DoS)",
        core=("T1498", "T1498.001", "T1498.002", "T1499", "T1499.001", "T1499.002", "T1499.003", "T1499.004"),
        label_words=("dos", "denial"),
    ),
    "reconnaissance": MissionSpec(
        key="reconnaissance",
        label="Reconnaissance",
        phrase="network reconnaissance (scanning)",
        core=("T1595", "T1595.001", "T1595.002", "T1595.003", "T1046"),
        related=("T1018", "T1592", "T1592.002"),
        label_words=("reconnaissance",),
    ),
    "brute-force": MissionSpec(
        key="brute-force",
        label="Brute Force",
        phrase="brute-force (password guessing)",
        core=("T1110", "T1110.001", "T1110.002", "T1110.003", "T1110.004"),
        related=("T1021.004", "T1078", "T1078.001"),
        label_words=("brute", "force", "forcing"),
    ),
}


@dataclass(frozen=True)
class ClassKnowledge:
    """What the mission graph knows of one fine class: its mission key, its ATT&CK techniques (most specific
    first) and cue words, the concepts that say most about it when the mission's vocabulary has them."""

    mission: str
    techniques: tuple[str, ...]
    cues: tuple[str, ...] = ()


# Every lab class (the paper's ten and the lab's extended ones, packetclip.traffic.labels.ALL_CLASSES) but Benign.
CLASS_KNOWLEDGE: dict[str, ClassKnowledge] = {
    "ICMP Flood": ClassKnowledge("dos", ("T1498.001", "T1498"), ("volume", "bandwidth")),
    "SYN Flood": ClassKnowledge("dos", ("T1499.001", "T1498.001"), ("exhaustion", "syn", "state")),
    "UDP Flood": ClassKnowledge("dos", ("T1498.001", "T1498"), ("volume", "bandwidth")),
    "DNS Flood": ClassKnowledge("dos", ("T1499.002", "T1498.001"), ("request", "dns")),
    "Slowloris": ClassKnowledge("dos", ("T1499.002", "T1499"), ("exhaustion", "request")),
    "HTTP Flood": ClassKnowledge("dos", ("T1499.002", "T1499.003"), ("request", "intensive")),
    "Reflection Amplification": ClassKnowledge("dos", ("T1498.002",), ("reflection", "amplification")),
    "ACK Flood": ClassKnowledge("dos", ("T1498.001", "T1499.001"), ("flood", "exhaustion", "ack")),
    "Slow HTTP": ClassKnowledge("dos", ("T1499.002", "T1499"), ("request", "exhaustion")),
    "OS Scan": ClassKnowledge("reconnaissance", ("T1592", "T1592.002", "T1595"), ("host", "software")),
    "Vulnerability Scan": ClassKnowledge("reconnaissance", ("T1595.002", "T1595.003"), ("wordlist", "vulnerability")),
    "Port Scan": ClassKnowledge("reconnaissance", ("T1046", "T1595.001"), ("discovery", "port")),
    "UDP Scan": ClassKnowledge("reconnaissance", ("T1046", "T1595.001"), ("discovery", "port")),
    "Ping Sweep": ClassKnowledge("reconnaissance", ("T1595.001", "T1018"), ("block", "ip", "remote")),
    "Service Scan": ClassKnowledge("reconnaissance", ("T1046", "T1592.002"), ("discovery", "service", "software")),
    "Dictionary Attack": ClassKnowledge("brute-force", ("T1110.001", "T1021.004"), ("guessing", "password")),
    "HTTP Brute Force": ClassKnowledge("brute-force", ("T1110.001", "T1110.003"), ("guessing", "password")),
    "IoT Brute Force": ClassKnowledge("brute-force", ("T1110.001", "T1078.001"), ("guessing", "default", "telnet")),
}


def classes_of(mission: str) -> dict[str, ClassKnowledge]:
    """The fine classes of a mission (key, label or alias) with what its graph knows of them."""
    key = mission_spec(mission).key
    return {name: k for name, k in CLASS_KNOWLEDGE.items() if k.mission == key}


# Short spellings people type on a command line (after lower-casing and joining words with "-").
MISSION_ALIASES = {"recon": "reconnaissance", "brute": "brute-force", "bruteforce": "brute-force",
                   "denial-of-service": "dos"}


def mission_spec(name: str) -> MissionSpec:
    """Look a mission up by key, label or alias, case/space/underscore-insensitively ("Brute Force", "brute_force",
    "bruteforce", "brute" -> brute-force; "recon" -> reconnaissance)."""
    key = "-".join(str(name).strip().lower().replace("_", " ").replace("-", " ").split())
    key = MISSION_ALIASES.get(key, key)
    if key in MISSIONS:
        return MISSIONS[key]
    for spec in MISSIONS.values():
        if key == "-".join(spec.label.lower().split()):
            return spec
    known = ", ".join(MISSIONS) + " (or recon, brute)"
    hint = " (Benign has no mission graph)" if key == "benign" else ""
    raise PacketClipError(f"unknown mission {name!r}{hint}; expected one of: {known}")
