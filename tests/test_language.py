"""Flow descriptions (templates -> concepts -> paraphrase), validation and fallback, the answer cache, the
chat backends against a real local OpenAI-compatible server running SmolLM2, and `packetclip describe`."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from packetclip.errors import PacketClipError
from packetclip.language.chat import ChatBackend, ChatCompletion, OpenAIChat, get_chat_backend
from packetclip.language.describe import Describer, KnowledgeConcepts, StaticConcepts
from packetclip.language.facts import fmt_byte_rate, fmt_bytes, fmt_duration, fmt_rate, numbers_in
from packetclip.language.paraphrase import (
    Draft,
    LLMParaphraser,
    ParaphraseCache,
    RulesParaphraser,
    strip_opening,
    validate_paraphrase,
)

CONCEPTS = StaticConcepts({
    "DoS": [("flood", 0), ("exhaustion", 0), ("syn", 1), ("bandwidth", 1), ("telnet", 2)],
    "Reconnaissance": [("scan", 0), ("discovery", 0), ("port", 1), ("banner", 1)],
    "Brute Force": [("password", 0), ("guessing", 0), ("credential", 1), ("ssh", 1)],
})


def _flow(flow_id: int, label: str, **cols) -> dict:
    row = {"flow_id": flow_id, "label": label, "Protocol": 6, "Src Port": 40000 + flow_id, "Dst Port": 80,
           "Flow Duration": 50_000, "Total Fwd Packet": 4, "Total Bwd packets": 4,
           "Total Length of Fwd Packet": 160, "Total Length of Bwd Packet": 500, "Flow Bytes/s": 13_200.0,
           "Flow Packets/s": 160.0, "Flow IAT Mean": 7_100.0, "SYN Flag Count": 2, "RST Flag Count": 0,
           "FIN Flag Count": 2, "ACK Flag Count": 7, "PSH Flag Count": 2, "URG Flag Count": 0, "ECE Flag Count": 0,
           "CWR Flag Count": 0, "FWD Init Win Bytes": 64_240, "ICMP Type": -1, "Down/Up Ratio": 1.0}
    row.update(cols)
    return row


def flows_table() -> pd.DataFrame:
    """One flow per behaviour the templates distinguish, labelled with the class that produces it."""
    rows = [
        _flow(1, "Benign", **{"Protocol": 17, "Dst Port": 53, "Total Fwd Packet": 1, "Total Bwd packets": 1,
                              "Total Length of Fwd Packet": 40, "Total Length of Bwd Packet": 120,
                              "SYN Flag Count": 0, "FIN Flag Count": 0, "ACK Flag Count": 0, "PSH Flag Count": 0,
                              "FWD Init Win Bytes": 0, "Flow Duration": 900}),
        _flow(2, "Vulnerability Scan"),
        _flow(3, "Port Scan", **{"Dst Port": 6881, "Total Fwd Packet": 1, "Total Bwd packets": 1,
                                 "Total Length of Fwd Packet": 0, "Total Length of Bwd Packet": 0,
                                 "SYN Flag Count": 1, "RST Flag Count": 1, "FIN Flag Count": 0, "ACK Flag Count": 1,
                                 "PSH Flag Count": 0, "Flow Duration": 180, "Flow Packets/s": 11_111.1}),
        _flow(4, "OS Scan", **{"Dst Port": 1, "Total Fwd Packet": 1, "Total Bwd packets": 0,
                               "Total Length of Fwd Packet": 0, "Total Length of Bwd Packet": 0, "SYN Flag Count": 1,
                               "FIN Flag Count": 0, "ACK Flag Count": 0, "PSH Flag Count": 0, "Flow Duration": 0,
                               # nmap's OS-detection T5 probe window (1,024 is its plain SYN scan's: no OS reading)
                               "Flow Packets/s": -1.0, "Flow Bytes/s": -1.0, "FWD Init Win Bytes": 31337}),
        _flow(5, "ICMP Flood", **{"Protocol": 1, "Dst Port": 0, "Src Port": 0, "Total Fwd Packet": 1,
                                  "Total Bwd packets": 1, "Total Length of Fwd Packet": 1400,
                                  "Total Length of Bwd Packet": 1400, "SYN Flag Count": 0, "FIN Flag Count": 0,
                                  "ACK Flag Count": 0, "PSH Flag Count": 0, "ICMP Type": 8, "Flow Duration": 81,
                                  "Flow Packets/s": 24_691.4, "FWD Init Win Bytes": 0}),
        _flow(6, "SYN Flood", **{"Dst Port": 23, "Total Fwd Packet": 1, "Total Bwd packets": 1,
                                 "Total Length of Fwd Packet": 0, "Total Length of Bwd Packet": 0, "SYN Flag Count": 2,
                                 "FIN Flag Count": 0, "ACK Flag Count": 1, "PSH Flag Count": 0, "Flow Duration": 325,
                                 "FWD Init Win Bytes": 64, "Flow Packets/s": 6_153.8}),
        _flow(7, "UDP Flood", **{"Protocol": 17, "Dst Port": 0, "Total Fwd Packet": 1, "Total Bwd packets": 0,
                                 "Total Length of Fwd Packet": 64, "Total Length of Bwd Packet": 0,
                                 "SYN Flag Count": 0, "FIN Flag Count": 0, "ACK Flag Count": 0, "PSH Flag Count": 0,
                                 "Flow Duration": 0, "FWD Init Win Bytes": 0}),
        _flow(8, "Slowloris", **{"Flow Duration": 18_700_000, "Total Fwd Packet": 6, "Total Bwd packets": 4,
                                 "Total Length of Fwd Packet": 177, "Total Length of Bwd Packet": 0,
                                 "Flow IAT Mean": 2_076_000.0, "Flow Packets/s": 0.535, "Flow Bytes/s": 9.46}),
        _flow(9, "Dictionary Attack", **{"Dst Port": 21, "Flow Duration": 3_100_000, "Total Fwd Packet": 6,
                                         "Total Bwd packets": 8, "Total Length of Fwd Packet": 31,
                                         "Total Length of Bwd Packet": 226, "PSH Flag Count": 7,
                                         "Flow IAT Mean": 239_000.0, "Flow Packets/s": 4.5}),
        _flow(10, "DNS Flood", **{"Protocol": 17, "Dst Port": 53, "Total Fwd Packet": 1, "Total Bwd packets": 1,
                                  "Total Length of Fwd Packet": 47, "Total Length of Bwd Packet": 138,
                                  "SYN Flag Count": 0, "FIN Flag Count": 0, "ACK Flag Count": 0, "PSH Flag Count": 0,
                                  "Flow Duration": 55_800, "FWD Init Win Bytes": 0, "Flow Packets/s": 35.8}),
    ]
    return pd.DataFrame(rows)


# ---- formatting and facts ------------------------------------------------------------------------------


def test_number_formatting_is_human_readable():
    assert fmt_bytes(64) == "64 bytes" and fmt_bytes(1) == "1 byte"
    assert fmt_bytes(1_234) == "1.2 kB" and fmt_bytes(1_234_567) == "1.2 MB" and fmt_bytes(35_400) == "35 kB"
    assert fmt_duration(81) == "81 µs" and fmt_duration(35_200) == "35 ms" and fmt_duration(3_140_000) == "3.1 s"
    assert fmt_duration(252e6) == "4.2 min"
    assert fmt_rate(4_123, "packets/s") == "4,100 packets/s" and fmt_rate(0.5352, "packets/s") == "0.54 packets/s"
    assert fmt_rate(35.4, "packets/s") == "35 packets/s" and fmt_byte_rate(29_300_000) == "29 MB/s"
    assert numbers_in("4,100 packets/s over IPv4, 0.54 s, 23/tcp and 1.2 kB") == [4100.0, 0.54, 23.0, 1.2]


# ---- descriptions --------------------------------------------------------------------------------------


def test_descriptions_deterministic_per_seed_and_different_across_seeds():
    flows = flows_table()
    first = Describer("rules", per_flow=3, seed=0, concepts=CONCEPTS).describe(flows)
    again = Describer("rules", per_flow=3, seed=0, concepts=CONCEPTS).describe(flows)
    other = Describer("rules", per_flow=3, seed=1, concepts=CONCEPTS).describe(flows)
    assert len(first) == 3 * len(flows)
    assert first["text"].tolist() == again["text"].tolist()
    changed = sum(a != b for a, b in zip(first["text"], other["text"]))
    assert changed >= 0.8 * len(first), f"only {changed} of {len(first)} descriptions changed with the seed"
    # The k descriptions of one flow differ from each other too.
    for _, group in first.groupby("flow_id"):
        assert group["text"].nunique() >= 2


def test_final_text_format_and_concepts_only_for_attacks():
    table = Describer("rules", per_flow=2, seed=3, concepts=CONCEPTS).describe(flows_table())
    assert set(table.columns) >= {"flow_id", "k", "label", "mission", "text", "backend", "fallback"}
    for _, row in table.iterrows():
        assert row["text"].startswith(f"A network traffic of {row['label']}. ")
        if row["label"] == "Benign":
            assert "Concepts:" not in row["text"] and row["mission"] == "Benign"
        else:
            # The suffix lists the mission's key concepts that the flow does not contradict.
            suffix = re.search(r" Concepts: ([a-z, ]+)\.$", row["text"])
            assert suffix, row["text"]
            listed = suffix.group(1).split(", ")
            assert listed and set(listed) <= set(CONCEPTS.key_concepts(row["mission"])), row["text"]
        assert row["backend"] == "rules" and not row["fallback"]
    # A flow that trickles a few bytes every two seconds is no flood: that key concept is left out.
    slow = table[table["label"] == "Slowloris"]["text"]
    assert all(t.endswith(" Concepts: exhaustion.") for t in slow), slow.tolist()
    # Missions come from the one label map.
    assert dict(zip(table["label"], table["mission"]))["Dictionary Attack"] == "Brute Force"


def test_templates_embed_the_row_values_and_the_semantics_of_the_flow():
    table = Describer("rules", per_flow=6, seed=0, concepts=CONCEPTS).describe(flows_table())
    text = {label: " ".join(group["draft"]) for label, group in table.groupby("label")}
    assert "ping" in text["ICMP Flood"] and "1,400 bytes" in text["ICMP Flood"]
    assert "domain name" in text["DNS Flood"] and "138 bytes" in text["DNS Flood"]
    assert "slow" in text["Slowloris"] and "2.1 s" in text["Slowloris"]
    assert "password" in text["Dictionary Attack"] and "FTP" in text["Dictionary Attack"]
    assert "closed" in text["Port Scan"] and "6881" in text["Port Scan"]
    assert "operating system" in text["OS Scan"]
    # Concepts that name a protocol the flow does not use are never drawn ("telnet" only fits port 23).
    drawn = table[table["label"].isin(["ICMP Flood", "UDP Flood", "Slowloris", "DNS Flood"])]["draft"]
    assert not any("telnet" in d.lower().split("concepts")[-1] for d in drawn if "elnet" not in d.split(".")[0])


def test_rules_paraphrases_keep_every_number_and_pass_validation():
    table = Describer("rules", per_flow=5, seed=11, concepts=CONCEPTS).describe(flows_table())
    for _, row in table.iterrows():
        body = row["text"][len(f"A network traffic of {row['label']}. "):].split(" Concepts:")[0]
        assert sorted(numbers_in(body)) == sorted(numbers_in(row["draft"])), (row["draft"], body)
        assert validate_paraphrase(f"A network traffic of {row['label']}. {body}",
                                   f"A network traffic of {row['label']}. {row['draft']}", row["label"]) is None


def test_default_concepts_come_from_the_mission_knowledge_graphs():
    concepts = KnowledgeConcepts(seed=0)
    table = Describer("rules", per_flow=1, seed=0, concepts=concepts).describe(flows_table())
    syn = table[table["label"] == "SYN Flood"]["text"].iloc[0]
    listed = syn.rsplit("Concepts: ", 1)[1].rstrip(".").split(", ")
    assert set(listed) <= set(concepts.key_concepts("DoS")) and "flood" in listed
    words = {w for w, _ in concepts.pool("DoS")}
    assert len(words) >= 6 and "flood" in concepts.key_concepts("DoS")


def test_unlabelled_flows_get_label_free_descriptions():
    labelled = Describer("rules", per_flow=2, concepts=CONCEPTS).describe(flows_table())
    table = Describer("rules", per_flow=2, concepts=CONCEPTS).describe(flows_table().drop(columns=["label"]))
    assert len(table) == len(labelled) and (table["label"] == "").all() and table["mission"].isna().all()
    assert not table["text"].str.contains("network traffic of|Concepts:", regex=True).any()
    # Same readings as the labelled drafts minus the concept sentence: the flow's own numbers are all there.
    for text, draft in zip(table["text"], table["draft"]):
        assert text and sorted(numbers_in(text)) == sorted(numbers_in(draft))


def test_flow_table_without_columns_is_a_clear_error():
    with pytest.raises(PacketClipError, match="Flow Duration"):
        Describer("rules", concepts=CONCEPTS).describe(flows_table().drop(columns=["Flow Duration"]))
    with pytest.raises(PacketClipError, match="--texts-per-flow"):
        Describer("rules", per_flow=0)
    with pytest.raises(PacketClipError, match="unknown paraphrase backend"):
        Describer("gpt-99").paraphraser  # noqa: B018


# ---- validation and fallback ---------------------------------------------------------------------------

SOURCE = ("A network traffic of SYN Flood. A barrage of handshake requests arrives at 4,100 packets/s (250 kB/s). "
          "The flow lasts 35 ms.")


@pytest.mark.parametrize("candidate, reason", [
    ("", "empty answer"),
    ("   ", "empty answer"),
    ("A network traffic of SYN Flood. Handshake requests come at 4100 packets/s (250 kB/s) from 12 hosts for 35 ms.",
     "new number: 12"),
    ("A network traffic of SYN Flood. Handshake requests come at 4,100 packets/s for 35 ms.", "number dropped: 250"),
    ("A network traffic of a flood. Handshake requests come at 4,100 packets/s (250 kB/s) for 35 ms.",
     "label word dropped: syn"),
    ("A network traffic of SYN Flood. " + "Handshake requests come at 4,100 packets/s (250 kB/s) for 35 ms, "
     + "and then more requests keep arriving for a long time " * 8 + "until it ends.", "too long"),
    ("Sure! Here is the rewritten text: A network traffic of SYN Flood at 4,100 packets/s (250 kB/s) for 35 ms.",
     "refusal or boilerplate"),
    ("I'm sorry, but I cannot help with SYN Flood traffic at 4,100 packets/s (250 kB/s) for 35 ms.",
     "refusal or boilerplate"),
    ("A network traffic of SYN Flood. Handshake requests arrive at 4,100 packets/s (250 kB/s) and last 35 ms and",
     "truncated"),
    ("A network traffic of SYN Flood at 4,100 packets/s (250 kB/s). It lasts 35 ms. It lasts 35 ms.", "repetition"),
])
def test_validation_rejects_bad_llm_answers(candidate, reason):
    assert validate_paraphrase(candidate, SOURCE, "SYN Flood") == reason


def test_validation_accepts_a_faithful_rewrite_with_other_number_formats():
    good = "A network traffic of SYN Flood. Handshake requests pour in at 4100 packets/s, about 250 kB/s, for 35 ms."
    assert validate_paraphrase(good, SOURCE, "SYN Flood") is None


def test_opening_sentences_that_only_restate_the_label_are_dropped():
    assert strip_opening("The network traffic of SYN Flood. SYN Flood: it pours in.", "SYN Flood") == "it pours in."
    assert strip_opening("SYN Flood requests pour in.", "SYN Flood") == "SYN Flood requests pour in."


class ScriptedChat(ChatBackend):
    """Answers with fixed strings, to drive the paraphraser's validation and fallback; counts calls."""

    name = "scripted"
    model = "fixed-answers"

    def __init__(self, answers):
        self.answers = list(answers)
        self.calls = 0

    def complete(self, messages, *, max_tokens=128, temperature=0.0, seed=0):
        answer = self.answers[self.calls % len(self.answers)]
        self.calls += 1
        return ChatCompletion(text=answer)


def test_llm_answers_that_fail_validation_fall_back_to_rules(tmp_path):
    draft = Draft(label="SYN Flood", sentences=["A barrage of handshake requests arrives at 4,100 packets/s (250 kB/s).",
                                                "The flow lasts 35 ms."])
    bad = ["", "A network traffic of SYN Flood. Requests at 4,100 packets/s (250 kB/s) for 35 ms from 7 bots.",
           "A network traffic. Requests at 4,100 packets/s (250 kB/s) for 35 ms.",
           "A network traffic of SYN Flood. " + "Requests at 4,100 packets/s (250 kB/s) for 35 ms keep coming. " * 12]
    good = "A network traffic of SYN Flood. Handshake requests pour in at 4,100 packets/s (250 kB/s) for 35 ms."
    chat = ScriptedChat(bad + [good])
    paraphraser = LLMParaphraser(chat, cache=ParaphraseCache(tmp_path))
    results = paraphraser.paraphrase_many([draft] * 5, seeds=[0, 1, 2, 3, 4])
    rules = RulesParaphraser()
    for seed, result in enumerate(results[:4]):
        assert result.fallback and result.backend == "rules" and result.reason
        assert result.body == rules.paraphrase(draft, seed=seed).body
    assert [r.reason.split(":")[0] for r in results[:4]] == ["empty answer", "new number", "label word dropped",
                                                             "repetition"]
    assert not results[4].fallback and results[4].backend == "scripted"
    assert results[4].body == "Handshake requests pour in at 4,100 packets/s (250 kB/s) for 35 ms."


# ---- chat backends against a real local OpenAI-compatible server (SmolLM2) -----------------------------


@pytest.fixture(scope="module")
def smollm2():
    try:
        backend = get_chat_backend("smollm2")
        backend.chat([{"role": "user", "content": "Hi"}], max_tokens=1)   # load once for the module
    except PacketClipError as err:
        pytest.skip(f"offline SmolLM2 unavailable: {err}")
    return backend


@pytest.fixture(scope="module")
def server(smollm2):
    from packetclip.language.server import ChatServer

    srv = ChatServer(smollm2, "127.0.0.1", 0, model_name="smollm2")
    srv.start_background()
    yield srv
    srv.stop()


def test_smollm2_dequantised_copy_is_cached_and_answers_the_same(smollm2, tmp_path):
    """The first load de-quantises the GGUF file (~25 s) and keeps the float32 weights; later loads read them."""
    from packetclip.language.chat import SmolLM2Chat

    again = SmolLM2Chat(threads=smollm2.threads)
    messages = [{"role": "user", "content": "Name one transport protocol."}]
    assert again.chat(messages, max_tokens=8) == smollm2.chat(messages, max_tokens=8)
    assert again.loaded_from == "cache" and smollm2.loaded_from in ("gguf", "cache")
    assert any(again._cache_folder(again.gguf_file).glob("model.safetensors"))
    # A damaged copy is not used (the backend then reads the GGUF file again and rewrites it).
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "model.safetensors").write_bytes(b"not safetensors")
    (damaged / "config.json").write_text("{}")
    assert SmolLM2Chat._read_cache(damaged) is None


def test_openai_backend_talks_to_the_real_local_server(server):
    client = OpenAIChat(base_url=server.url, model="smollm2", timeout=120)
    before = server.requests_served
    answer = client.complete([{"role": "system", "content": "Answer in one word."},
                              {"role": "user", "content": "What protocol does ping use?"}], max_tokens=6)
    assert isinstance(answer.text, str) and answer.text.strip()
    assert answer.prompt_tokens > 5 and 1 <= answer.completion_tokens <= 6
    assert answer.finish_reason in ("stop", "length")
    assert server.requests_served == before + 1
    # Greedy answers are reproducible through the protocol, and equal to the backend's own answer.
    again = client.chat([{"role": "system", "content": "Answer in one word."},
                         {"role": "user", "content": "What protocol does ping use?"}], max_tokens=6)
    assert again == answer.text == server.backend.chat(
        [{"role": "system", "content": "Answer in one word."},
         {"role": "user", "content": "What protocol does ping use?"}], max_tokens=6)
    with urllib.request.urlopen(f"{server.url}/models", timeout=10) as response:
        assert json.load(response)["data"][0]["id"] == "smollm2"


def test_server_rejects_bad_requests_and_client_reports_them(server):
    request = urllib.request.Request(f"{server.url}/chat/completions", data=b'{"messages": "hi"}',
                                     headers={"Content-Type": "application/json"}, method="POST")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=10)
    assert err.value.code == 400 and "messages" in json.load(err.value)["error"]["message"]
    with pytest.raises(PacketClipError, match="HTTP 404: no such endpoint"):
        OpenAIChat(base_url=server.url + "/nope").chat([{"role": "user", "content": "hi"}], max_tokens=2)
    with pytest.raises(PacketClipError, match="max_tokens"):     # checked before anything is sent
        OpenAIChat(base_url=server.url).chat([{"role": "user", "content": "hi"}], max_tokens=100_000)


def test_openai_backend_without_a_server_is_a_clear_error():
    import socket

    with socket.socket() as sock:          # a loopback port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(PacketClipError, match="cannot reach"):
        OpenAIChat(base_url=f"http://127.0.0.1:{port}/v1", timeout=5).chat([{"role": "user", "content": "hi"}])
    with pytest.raises(PacketClipError, match="unknown chat backend"):
        get_chat_backend("gpt-99")


def test_cache_makes_an_llm_rerun_identical_without_calling_the_server(server, tmp_path):
    flows = flows_table().iloc[[5, 9]]          # SYN Flood, DNS Flood
    client = OpenAIChat(base_url=server.url, model="smollm2", timeout=120)
    options = {"max_tokens": 48}

    first = Describer("openai", per_flow=1, seed=0, concepts=CONCEPTS, chat=client, cache_dir=tmp_path,
                      paraphrase_options=options)
    served = server.requests_served
    table1 = first.describe(flows)
    assert server.requests_served == served + 2
    assert first.paraphraser.cache.misses == 2 and first.paraphraser.cache.hits == 0
    assert set(table1["backend"]) <= {"openai", "rules"}
    assert all((b == "rules") == f for b, f in zip(table1["backend"], table1["fallback"]))

    second = Describer("openai", per_flow=1, seed=0, concepts=CONCEPTS, chat=client, cache_dir=tmp_path,
                       paraphrase_options=options)
    table2 = second.describe(flows)
    assert second.paraphraser.cache.hits == 2 and second.paraphraser.cache.misses == 0
    assert server.requests_served == served + 2          # no new model call
    pd.testing.assert_frame_equal(table1, table2)


# ---- CLI -----------------------------------------------------------------------------------------------


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "packetclip.cli", *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd)


def test_cli_describe_writes_descriptions_and_figure_6(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    flows = pd.concat([flows_table()] * 3, ignore_index=True)
    flows["flow_id"] = np.arange(len(flows))
    # Labels in labels.parquet, joined on flow_id (as the lab writes them).
    flows.drop(columns=["label"]).to_parquet(ws / "flows.parquet")
    flows[["flow_id", "label"]].to_parquet(ws / "labels.parquet")
    result = _cli("describe", str(ws), "--backend", "rules", "--texts-per-flow", "2", "--figures", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    table = pd.read_parquet(ws / "descriptions.parquet")
    assert len(table) == 2 * len(flows) and set(table["label"]) == set(flows["label"])
    for mission in ("dos", "reconnaissance", "brute-force", "benign"):
        for kind in ("wordcloud", "top_words"):
            png = ws / "figures" / f"{kind}_{mission}.png"
            assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    # --limit spreads the flows over the labels (not the first labels alphabetically); --out is a folder,
    # the workspace keeps its own descriptions table.
    limited = _cli("describe", str(ws), "--texts-per-flow", "1", "--limit", "10", "--out", str(tmp_path / "d"),
                   cwd=tmp_path)
    assert limited.returncode == 0, limited.stderr
    copy = pd.read_parquet(tmp_path / "d" / "descriptions.parquet")
    assert len(copy) == 10 and copy["label"].nunique() == 10
    pd.testing.assert_frame_equal(copy, pd.read_parquet(ws / "descriptions.parquet"))


def test_limit_spreads_over_labels_not_the_alphabet():
    from packetclip.language.workspace import balanced_sample

    labels = [f"class {c}" for c in "ABCDEFGHIJ"]
    flows = pd.DataFrame({"flow_id": np.arange(100), "label": np.repeat(labels, 10)})
    flows.loc[flows["label"] == "class J", "label"] = ["class J"] * 2 + ["class I"] * 8   # J has 2 rows only
    five = [balanced_sample(flows, 5, seed=seed)["label"] for seed in range(4)]
    assert all(s.nunique() == 5 for s in five)
    assert any(sorted(s) != labels[:5] for s in five) and len({tuple(sorted(s)) for s in five}) > 1
    twenty = balanced_sample(flows, 20, seed=0)["label"].value_counts()
    assert len(twenty) == 10 and twenty.sum() == 20 and twenty.max() - twenty.min() <= 1
    thirty = balanced_sample(flows, 30, seed=0)["label"].value_counts()      # J runs out: the rest spread on
    assert thirty["class J"] == 2 and thirty.sum() == 30 and thirty.drop("class J").max() <= 4
    assert balanced_sample(flows, 7, seed=3).equals(balanced_sample(flows, 7, seed=3))
    unlabelled = balanced_sample(flows.drop(columns=["label"]), 7, seed=0)
    assert len(unlabelled) == 7 and unlabelled["flow_id"].is_monotonic_increasing


def test_cli_describe_bad_input_is_one_line_and_exit_2(tmp_path):
    missing = _cli("describe", str(tmp_path / "nope"), cwd=tmp_path)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "Traceback" not in missing.stderr
    ws = tmp_path / "ws"
    ws.mkdir()
    flows_table().to_parquet(ws / "flows.parquet")
    (tmp_path / "file").write_text("x")
    not_a_folder = _cli("describe", str(ws), "--out", str(tmp_path / "file"), cwd=tmp_path)
    assert not_a_folder.returncode == 2 and "folder" in not_a_folder.stderr
    assert not_a_folder.stderr.count("\n") == 1 and "Traceback" not in not_a_folder.stderr
    (ws / "flows.parquet").write_bytes(b"not parquet at all")
    garbage = _cli("describe", str(ws), cwd=tmp_path)
    assert garbage.returncode == 2 and "flows.parquet" in garbage.stderr and "Traceback" not in garbage.stderr
    assert re.search(r"^packetclip: error: ", garbage.stderr)


# ---- untrusted input: request bodies and flow rows (hypothesis) ----------------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.one_of(
    st.binary(max_size=200),
    _json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({"messages": _json_values}, optional={
        "max_tokens": _json_values, "temperature": _json_values, "seed": _json_values, "n": _json_values,
        "stream": _json_values}).map(lambda v: json.dumps(v).encode()),
    st.integers(1, 5000).map(lambda n: b"[" * n + b"]" * n),
))
def test_chat_request_parser_only_raises_packetclip_errors(body):
    from packetclip.language.server import parse_chat_request

    try:
        messages, kwargs = parse_chat_request(body)
    except PacketClipError:
        return
    assert messages and all(m["role"] in ("system", "user", "assistant") for m in messages)
    assert 1 <= kwargs["max_tokens"] <= 8192 and 0 <= kwargs["temperature"] <= 2


_cell = st.one_of(st.none(), st.integers(-10**12, 10**12), st.floats(allow_nan=True, allow_infinity=True),
                  st.text(max_size=6))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values=st.fixed_dictionaries({c: _cell for c in (
    "Protocol", "Dst Port", "Flow Duration", "Total Fwd Packet", "Total Bwd packets", "Total Length of Fwd Packet",
    "Total Length of Bwd Packet", "Flow Bytes/s", "Flow Packets/s", "Flow IAT Mean", "SYN Flag Count",
    "RST Flag Count", "FWD Init Win Bytes", "ICMP Type")}), label=st.sampled_from(["Benign", "SYN Flood", "Port Scan"]),
    seed=st.integers(0, 2**31 - 1))
def test_odd_flow_values_still_give_valid_descriptions(values, label, seed):
    flows = pd.DataFrame([{"flow_id": 1, "label": label, **values}])
    table = Describer("rules", per_flow=2, seed=seed, concepts=CONCEPTS).describe(flows)
    for _, row in table.iterrows():
        assert row["text"].startswith(f"A network traffic of {label}. ")
        body = row["text"][len(f"A network traffic of {label}. "):].split(" Concepts:")[0]
        assert "nan" not in body.lower().split() and "inf" not in body.lower().split()
        assert sorted(numbers_in(body)) == sorted(numbers_in(row["draft"]))
