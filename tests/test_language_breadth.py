"""Descriptions and mission graphs of the lab's classes beyond the paper (issue 16, deliverable 3).

A lab capture with every class (``--classes all``) is described on the template path; every description must pass
the faithfulness rules and carry its class's mission, every class must have a key concept of its own ATT&CK
techniques in its mission's graph, and wrong sentences about these flows must be caught by the checker.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from packetclip.knowledge import load_default_graph
from packetclip.knowledge.attack import AttackSource
from packetclip.knowledge.missions import CLASS_KNOWLEDGE, MISSIONS, classes_of, mission_spec
from packetclip.lab.synth import SynthLab
from packetclip.language import Describer
from packetclip.language.context import add_host_context
from packetclip.language.facts import FlowFacts, resolve_columns
from packetclip.language.faithfulness import check, violations
from packetclip.language.workspace import balanced_sample
from packetclip.traffic.labels import ALL_CLASSES, EXTENDED_CLASSES, mission_of
from packetclip.traffic.workspace import Workspace

PER_CLASS = 15


@pytest.fixture(scope="module")
def flows(tmp_path_factory) -> pd.DataFrame:
    """A 30 s lab capture with all 19 classes, host context computed over the whole table (as describe does)."""
    out = tmp_path_factory.mktemp("breadth_language")
    SynthLab(duration_s=30.0, seed=11, classes="all").generate(out, progress=False)
    return add_host_context(Workspace.open(out).labelled_flows())


@pytest.fixture(scope="module")
def described(flows) -> tuple[pd.DataFrame, pd.DataFrame]:
    sample = balanced_sample(flows, PER_CLASS * len(ALL_CLASSES), seed=0)
    return sample, Describer("rules", per_flow=2, seed=0).describe(sample)


def _facts_of(flows: pd.DataFrame, label: str, where=None) -> FlowFacts:
    rows = flows[flows["label"] == label]
    if where is not None:
        rows = rows[where(rows)]
    assert len(rows), f"no {label} flow matches"
    return FlowFacts.from_row(rows.iloc[0].to_dict(), resolve_columns(flows.columns))


def test_every_new_class_is_described_faithfully_under_its_mission(flows, described):
    sample, table = described
    assert set(EXTENDED_CLASSES) <= set(table["label"]), "the lab capture lacks a class"
    bad = violations(table, flows)
    assert bad.empty, bad.groupby(["label", "rule"]).size().to_string() + "\n" + bad["text"].iloc[0]
    for label in ALL_CLASSES:
        rows = table[table["label"] == label]
        assert len(rows), label
        assert (rows["mission"] == mission_of(label)).all(), label
        assert rows["text"].str.startswith(f"A network traffic of {label}. ").all(), label
        if label != "Benign":
            keys = set(load_default_graph(mission_of(label)).key_concepts())
            listed = rows["text"].str.extract(r"Concepts: ([^.]*)\.$")[0].dropna().str.split(", ")
            assert len(listed) == len(rows) and all(set(words) <= keys for words in listed), label


def test_new_classes_get_readings_of_what_their_flows_do(described):
    """The wording a flow earns from its own features: answers without a request for reflection, segments outside
    any connection for ACK/RST floods, host after host for a ping sweep; never a vulnerability probe for an
    HTTP flood or login brute force, nor a DNS query for a reflected DNS answer."""
    _, table = described
    text = table.groupby("label")["text"].apply(" ".join)
    assert "without any request" in text["Reflection Amplification"]
    assert "hostname query" not in text["Reflection Amplification"]
    assert "outside any connection" in text["ACK Flood"] or "without a handshake" in text["ACK Flood"]
    assert "half-open" not in text["ACK Flood"]
    assert "host after host" in text["Ping Sweep"] or "which addresses respond" in text["Ping Sweep"]
    assert "operating system" not in text["Ping Sweep"]
    for label in ("HTTP Flood", "HTTP Brute Force"):
        assert "security flaws" not in text[label] and "weaknesses" not in text[label], label
    assert "Incomplete HTTP headers" not in text["Slow HTTP"]


def test_wrong_descriptions_of_new_class_flows_are_flagged(flows):
    """A real negative test: sentences that other classes' flows earn, put on these flows, break rules."""
    reflected = _facts_of(flows, "Reflection Amplification", lambda r: r["Protocol"] == 17)
    stray = _facts_of(flows, "ACK Flood")
    login_page = _facts_of(flows, "HTTP Brute Force")
    page = _facts_of(flows, "HTTP Flood", lambda r: r["Total Length of Bwd Packet"] > 1500)
    sweep = _facts_of(flows, "Ping Sweep")
    udp_probe = _facts_of(flows, "UDP Scan", lambda r: r["Protocol"] == 17)
    cases = [
        (reflected, "Reflection Amplification", "A hostname query is sent to the name server.", "dns_query"),
        (stray, "ACK Flood", "The handshake request is left half-open: no acknowledgement ever completes it.",
         "half_open"),
        (login_page, "HTTP Brute Force", "The source sends 100 such requests to one web server, probing known paths "
         "for weaknesses rather than browsing.", "flaw_intent"),
        (page, "HTTP Flood", "One web request is answered with only 2.6 kB, about the size of an error page rather "
         "than content.", "error_page"),
        (sweep, "Ping Sweep", "A crafted probe whose answer reveals the target's operating system.", "fingerprinting"),
        (udp_probe, "UDP Scan", "Oversized DNS answers reach this host: unrequested, amplified replies.", "answers"),
        (udp_probe, "UDP Scan", "It is one lone TCP segment outside any connection.", "no_handshake"),
        (login_page, "HTTP Brute Force", "Its source reaches 23 hosts, checking host after host which addresses "
         "respond.", "host_sweep"),
    ]
    for facts, label, sentence, rule in cases:
        broken = {name for name, _, _ in check(f"A network traffic of {label}. {sentence}", facts, label)}
        assert rule in broken, (label, sentence, broken)
    # The same checker passes the true sentences of these flows.
    assert not check("A network traffic of ACK Flood. One header-only TCP RST segment, outside any connection "
                     "(no handshake precedes it in the flow).", stray, "ACK Flood")


def test_every_class_has_a_key_concept_of_its_own_techniques_in_valid_graphs():
    corpus = AttackSource().corpus
    assert set(CLASS_KNOWLEDGE) == set(ALL_CLASSES) - {"Benign"}
    for name, knowledge in CLASS_KNOWLEDGE.items():
        assert mission_spec(knowledge.mission).label == mission_of(name), name
        for technique in knowledge.techniques:
            assert technique in corpus.techniques, technique          # ATT&CK v15 has it
            assert technique in MISSIONS[knowledge.mission].techniques, (name, technique)
    wanted = {"T1498.001", "T1498.002", "T1499.001", "T1499.002", "T1046", "T1595.001", "T1018", "T1110.001",
              "T1078.001"}
    seen = set()
    for key in MISSIONS:
        for seed in (0, 7):
            graph = load_default_graph(key, seed=seed).validate()
            assert len(graph.key_concepts()) == 6
            seen |= set(graph.techniques())
            key_techniques = {n.provenance for n in graph.nodes if n.level == 0}
            for name, knowledge in classes_of(key).items():
                assert key_techniques & set(knowledge.techniques), (key, seed, name)
    assert wanted <= seen, wanted - seen
    dos = load_default_graph("dos")
    assert np.isin(["reflection", "amplification"], dos.key_concepts()).any()


def test_an_mqtt_session_that_is_only_a_connect_reads_as_a_login_and_a_publishing_one_does_not():
    def facts(**values) -> FlowFacts:
        row = {"Protocol": 6, "Src Port": 40000, "Dst Port": 1883, "Total Fwd Packet": 4, "Total Bwd packets": 4,
               "SYN Flag Count": 2, "ACK Flag Count": 7, "PSH Flag Count": 2, "FIN Flag Count": 2,
               "Flow Packets/s": 2900.0, "Flow Bytes/s": 15000.0, "Flow IAT Mean": 400.0} | values
        return FlowFacts.from_row(row, resolve_columns(row))

    guess = facts(**{"Total Length of Fwd Packet": 39, "Fwd Packet Length Max": 39, "Total Length of Bwd Packet": 4,
                     "Flow Duration": 2700})
    publish = facts(**{"Total Length of Fwd Packet": 300, "Fwd Packet Length Max": 120,
                       "Total Length of Bwd Packet": 4, "Flow Duration": 2_000_000})
    assert "mqtt_login" in dict(guess.interpretation()) and "mqtt_login" not in dict(publish.interpretation())
    claim = "A network traffic of IoT Brute Force. One CONNECT carries the username and password."
    assert not check(claim, guess, "IoT Brute Force")
    assert "credentials" in {r for r, _, _ in check(claim, publish, "IoT Brute Force")}
