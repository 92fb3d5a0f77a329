"""The one label map: raw dataset labels -> fine classes -> missions."""

from __future__ import annotations

import pytest

from packetclip.traffic.labels import (
    FINE_CLASSES,
    FINE_TO_MISSION,
    MISSIONS,
    fine_class_of,
    is_attempted,
    label_map_table,
    mission_of,
    normalise_label,
)


def test_paper_classes_and_missions():
    assert FINE_CLASSES == (
        "Benign", "OS Scan", "Vulnerability Scan", "Port Scan", "ICMP Flood",
        "Slowloris", "SYN Flood", "UDP Flood", "DNS Flood", "Dictionary Attack",
    )
    assert MISSIONS == ("Benign", "DoS", "Reconnaissance", "Brute Force")
    assert set(FINE_TO_MISSION) == set(FINE_CLASSES)
    assert {c for c, m in FINE_TO_MISSION.items() if m == "Reconnaissance"} == {
        "OS Scan", "Vulnerability Scan", "Port Scan"}
    assert {c for c, m in FINE_TO_MISSION.items() if m == "DoS"} == {
        "ICMP Flood", "SYN Flood", "UDP Flood", "DNS Flood", "Slowloris"}
    assert {c for c, m in FINE_TO_MISSION.items() if m == "Brute Force"} == {"Dictionary Attack"}
    for fine in FINE_CLASSES:
        assert normalise_label(fine) == fine
        assert fine_class_of(fine) == fine


@pytest.mark.parametrize(
    "raw, label, mission",
    [
        # ACI-IoT-2023
        ("Benign", "Benign", "Benign"),
        ("DNS Flood", "DNS Flood", "DoS"),
        ("Dictionary Attack", "Dictionary Attack", "Brute Force"),
        ("ICMP Flood", "ICMP Flood", "DoS"),
        ("OS Scan", "OS Scan", "Reconnaissance"),
        ("Ping Sweep", "Ping Sweep", "Reconnaissance"),
        ("Port Scan", "Port Scan", "Reconnaissance"),
        ("Slowloris", "Slowloris", "DoS"),
        ("SYN Flood", "SYN Flood", "DoS"),
        ("UDP Flood", "UDP Flood", "DoS"),
        ("Vulnerability Scan", "Vulnerability Scan", "Reconnaissance"),
        ("ARP Spoofing", "ARP Spoofing", None),
        # CIC-IDS2017 (improved and original spellings)
        ("BENIGN", "Benign", "Benign"),
        ("DDoS", "DDoS", "DoS"),
        ("DoS Hulk", "DoS Hulk", "DoS"),
        ("DoS GoldenEye", "DoS GoldenEye", "DoS"),
        ("DoS Slowloris", "Slowloris", "DoS"),
        ("DoS slowloris", "Slowloris", "DoS"),
        ("DoS Slowhttptest", "DoS Slowhttptest", "DoS"),
        ("FTP-Patator", "Dictionary Attack", "Brute Force"),
        ("SSH-Patator", "Dictionary Attack", "Brute Force"),
        ("Portscan", "Port Scan", "Reconnaissance"),
        ("PortScan", "Port Scan", "Reconnaissance"),
        ("Infiltration - Portscan", "Port Scan", "Reconnaissance"),
        ("Botnet", "Botnet", None),
        ("Bot", "Botnet", None),
        ("Web Attack - Brute Force", "Web Attack - Brute Force", "Brute Force"),
        ("Web Attack \x96 Brute Force", "Web Attack - Brute Force", "Brute Force"),
        ("Web Attack \ufffd Sql Injection", "Web Attack - SQL Injection", None),
        ("Web Attack - XSS", "Web Attack - XSS", None),
        ("Infiltration", "Infiltration", None),
        ("Heartbleed", "Heartbleed", None),
        # CSE-CIC-IDS2018
        ("DoS attacks-Slowloris", "Slowloris", "DoS"),
        ("DoS attacks-Hulk", "DoS Hulk", "DoS"),
        ("DoS attacks-SlowHTTPTest", "DoS Slowhttptest", "DoS"),
        ("DDOS attack-LOIC-UDP", "UDP Flood", "DoS"),
        ("DDOS attack-HOIC", "DDoS HOIC", "DoS"),
        ("DDoS attacks-LOIC-HTTP", "DDoS LOIC-HTTP", "DoS"),
        ("SSH-Bruteforce", "Dictionary Attack", "Brute Force"),
        ("FTP-BruteForce", "Dictionary Attack", "Brute Force"),
        ("Brute Force -Web", "Web Attack - Brute Force", "Brute Force"),
        ("Brute Force -XSS", "Web Attack - XSS", None),
        ("SQL Injection", "Web Attack - SQL Injection", None),
        ("Infilteration", "Infiltration", None),
    ],
)
def test_dataset_labels(raw, label, mission):
    assert normalise_label(raw) == label
    assert mission_of(raw) == mission
    assert mission_of(label) == mission


@pytest.mark.parametrize("raw", ["  dos_SLOWLORIS ", "DOS-SLOWLORIS", "dos slowloris", "Dos\tSlowloris"])
def test_case_whitespace_dash_underscore_insensitive(raw):
    assert normalise_label(raw) == "Slowloris"


def test_attempted_variants_stay_separable():
    assert normalise_label("DoS Hulk - Attempted") == "DoS Hulk - Attempted"
    assert normalise_label("SSH-Patator - Attempted") == "Dictionary Attack - Attempted"
    assert normalise_label("dos slowloris   ATTEMPTED") == "Slowloris - Attempted"
    assert is_attempted("DoS Hulk - Attempted") and not is_attempted("DoS Hulk")
    assert mission_of("DoS Hulk - Attempted") == "DoS"
    assert mission_of("DoS Hulk - Attempted", attempted="benign") == "Benign"
    assert mission_of("DoS Hulk - Attempted", attempted="none") is None
    assert mission_of("Botnet - Attempted") is None
    assert fine_class_of("SSH-Patator - Attempted") is None
    with pytest.raises(ValueError):
        mission_of("DoS Hulk", attempted="maybe")


def test_unknown_labels_are_kept_not_merged():
    assert normalise_label("  Some   New\tAttack ") == "Some New Attack"
    assert mission_of("Some New Attack") is None
    assert fine_class_of("DoS Hulk") is None
    assert normalise_label("Attempted") == "Attempted"


def test_label_map_table_is_consistent():
    rows = label_map_table()
    assert len(rows) == len({r[0] for r in rows})
    for raw, label, mission in rows:
        assert normalise_label(raw) == label
        assert (mission_of(raw) or "") == mission
        assert mission == "" or mission in MISSIONS
    listed = {label for _, label, _ in rows}
    assert set(FINE_CLASSES) <= listed
