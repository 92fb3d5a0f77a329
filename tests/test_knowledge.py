"""Mission knowledge graphs: ATT&CK-grounded graphs per mission, structure rules, exports, LLM-answer handling, CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from packetclip.errors import PacketClipError
from packetclip.knowledge import (
    EMBEDDING_ID,
    MISSIONS,
    SENSOR_ID,
    ConceptNode,
    GraphBounds,
    GraphValidationError,
    MissionGraph,
    build_all,
    load_default_graph,
    mission_spec,
)
from packetclip.knowledge.attack import AttackCorpus, AttackSource, LayeredBuilder
from packetclip.knowledge.llm import merge_with_fallback, parse_word_list
from packetclip.knowledge.text import STOPWORDS

MISSION_KEYS = list(MISSIONS)
# Words an ATT&CK-grounded graph must never contain: boilerplate, function words, citation debris.
JUNK = {"the", "adversary", "adversaries", "may", "citation", "retrieved", "http", "www", "com", "also", "used"}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("kg-cache")


@pytest.fixture(scope="module")
def source(cache_dir) -> AttackSource:
    return AttackSource(cache_dir=cache_dir)


@pytest.fixture(scope="module")
def graphs(source) -> dict[str, MissionGraph]:
    return {key: source.build(key, seed=0) for key in MISSION_KEYS}


# ---- the ATT&CK source ------------------------------------------------------------------------


@pytest.mark.parametrize("mission", MISSION_KEYS)
def test_attack_graph_is_valid_and_grounded(graphs, mission):
    graph = graphs[mission]
    spec = mission_spec(mission)
    graph.validate()
    assert graph.n_levels == 3 and len(graph.key_concepts()) == 6
    assert all(len(level) >= 1 for level in graph.levels())
    # Every concept comes from one of the mission's own ATT&CK techniques.
    assert {n.provenance for n in graph.nodes} <= set(spec.techniques)
    assert set(graph.meta["techniques"]) == set(spec.techniques)
    words = graph.concepts()
    assert len(words) == len(set(words))
    assert not set(words) & (JUNK | STOPWORDS)
    # No graph names a mission label: it must add knowledge, not echo a class name.
    assert not set(words) & {"dos", "denial", "reconnaissance", "brute", "force"}


def test_attack_concepts_are_the_missions_vocabulary(graphs):
    """The key concepts are the words ATT&CK uses for each mission (read off the v15 technique texts)."""
    assert "flood" in graphs["dos"].key_concepts()
    assert {"amplification", "reflection", "exhaustion"} & set(graphs["dos"].key_concepts())
    assert "scan" in graphs["reconnaissance"].key_concepts()
    assert {"password", "guessing"} <= set(graphs["brute-force"].key_concepts())
    assert {"syn", "ack", "packet"} & set(graphs["dos"].concepts())
    assert {"port", "banner", "icmp", "vulnerability"} & set(graphs["reconnaissance"].concepts())
    assert {"ssh", "telnet", "ftp", "lockout", "login"} & set(graphs["brute-force"].concepts())


def test_structure_sensor_and_embedding(graphs):
    graph = graphs["dos"]
    sensor_targets = {d for s, d in graph.edges if s == SENSOR_ID}
    assert sensor_targets == {n.id for n in graph.nodes if n.level == 0}
    fed = {s for s, d in graph.edges if d == EMBEDDING_ID}
    assert fed == {n.id for n in graph.nodes if n.level == graph.n_levels - 1}
    g = graph.to_networkx()
    assert nx.is_directed_acyclic_graph(g)
    # Every concept lies on a sensor -> embedding path.
    for node in graph.nodes:
        assert nx.has_path(g, SENSOR_ID, node.id) and nx.has_path(g, node.id, EMBEDDING_ID)


def test_determinism_per_seed(source, graphs, cache_dir):
    again = AttackSource(cache_dir=cache_dir).build("dos", seed=0)
    assert again.to_dict() == graphs["dos"].to_dict()
    others = [source.build("dos", seed=s).concepts() for s in (1, 2, 3)]
    assert any(words != graphs["dos"].concepts() for words in others)
    flat = AttackSource(cache_dir=cache_dir, temperature=0.0)
    assert flat.build("reconnaissance", seed=1).to_dict()["nodes"] == flat.build("reconnaissance", seed=5).to_dict()["nodes"]


def test_sizes_follow_parameters(source):
    graph = source.build("brute-force", n_key=4, n_levels=1, per_node=3, seed=0)
    assert len(graph.key_concepts()) == 4 and graph.n_levels == 2
    for word in graph.key_concepts():
        assert 1 <= len(graph.children(word)) <= 3
    with pytest.raises(PacketClipError):
        source.build("dos", n_key=0)


def test_corpus_cache_is_written_and_reused(cache_dir, source):
    source.corpus  # noqa: B018 - loads (and caches) the corpus
    cached = list(cache_dir.glob("attack-corpus-*.json"))
    assert len(cached) == 1
    warm = AttackCorpus.load(cache_dir=cache_dir)
    assert warm.bundle_sha256 == source.corpus.bundle_sha256
    assert warm.techniques.keys() == source.corpus.techniques.keys()
    assert warm.techniques["T1498.001"].name == "Direct Network Flood"
    assert warm.techniques["T1498.001"].sentences == source.corpus.techniques["T1498.001"].sentences


def _technique(tid: str, name: str, description: str) -> dict:
    return {
        "type": "attack-pattern", "id": f"attack-pattern--{tid.replace('.', '0')[1:]:0>8}-0000-4000-8000-000000000000",
        "created": "2020-01-01T00:00:00.000Z", "modified": "2020-01-01T00:00:00.000Z", "name": name,
        "description": description, "x_mitre_domains": ["enterprise-attack"],
        "external_references": [{"source_name": "mitre-attack", "external_id": tid}],
    }


def test_small_bundle_parse_and_damaged_cache_is_rebuilt(tmp_path):
    bundle = tmp_path / "mini-attack.json"
    objects = [
        _technique("T1498", "Network Denial of Service",
                   "Adversaries may flood the bandwidth with packets.(Citation: X) See [Other](https://attack.mitre.org/techniques/T1000)."),
        _technique("T1110", "Brute Force", "Adversaries may guess passwords.\n\n* SSH (22/TCP)\n* Telnet (23/TCP)"),
    ]
    bundle.write_text(json.dumps({"type": "bundle", "id": "bundle--00000000-0000-4000-8000-000000000000",
                                  "spec_version": "2.0", "objects": objects}))
    cache = tmp_path / "cache"
    corpus = AttackCorpus.load(bundle, cache_dir=cache)
    assert corpus.techniques["T1498"].sentences[1] == ["flood", "bandwidth", "packet"]
    assert corpus.techniques["T1110"].sentences[1:] == [["guess", "password"], ["ssh", "telnet"]]
    (cached,) = cache.glob("attack-corpus-*.json")
    cached.write_text("{not json", encoding="utf-8")
    assert AttackCorpus.load(bundle, cache_dir=cache).techniques["T1110"].sentences == corpus.techniques["T1110"].sentences
    garbage = tmp_path / "garbage.json"
    garbage.write_text("[1, 2")
    with pytest.raises(PacketClipError, match="garbage.json"):
        AttackCorpus.load(garbage, cache_dir=cache)
    with pytest.raises(PacketClipError, match="no technique"):
        AttackSource(bundle, cache_dir=cache).build("reconnaissance")


def test_unknown_mission_is_a_clear_error(source):
    with pytest.raises(PacketClipError, match="unknown mission"):
        source.build("exfiltration")
    with pytest.raises(PacketClipError, match="Benign has no mission graph"):
        mission_spec("Benign")
    assert mission_spec("Brute Force").key == "brute-force" and mission_spec("DoS").key == "dos"


# ---- helpers the description generator uses ----------------------------------------------------


def test_concept_helpers(graphs):
    graph = graphs["brute-force"]
    assert graph.concepts(level=0) == graph.key_concepts()
    assert len(graph.concepts()) == len(graph.nodes)
    picks = graph.sample_concepts(np.random.default_rng(7), 4)
    assert picks == graph.sample_concepts(np.random.default_rng(7), 4)
    assert len(set(picks)) == 4 and set(picks) <= set(graph.concepts())
    assert sorted(graph.sample_concepts(np.random.default_rng(0), 999)) == sorted(graph.concepts())
    assert set(graph.sample_concepts(np.random.default_rng(0), 3, level=0)) <= set(graph.key_concepts())
    word = graph.key_concepts()[0]
    assert graph.concept_provenance(word).startswith("T1110") or graph.concept_provenance(word) == "T1021.004"
    with pytest.raises(KeyError):
        graph.concept_provenance("not-a-concept")


def test_load_default_graph_and_build_all(tmp_path, cache_dir):
    graph = load_default_graph("Brute Force", seed=0, cache_dir=cache_dir)
    assert graph.mission == "brute-force" and graph.to_dict() == load_default_graph("brute-force", cache_dir=cache_dir).to_dict()
    written = build_all(tmp_path / "kg", source=AttackSource(cache_dir=cache_dir))
    assert set(written) == set(MISSION_KEYS)
    for paths in written.values():
        assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and paths["png"].stat().st_size > 20_000
        assert MissionGraph.load(paths["json"]).mission in MISSION_KEYS


# ---- validation rules on hand-made graphs --------------------------------------------------------


def _tiny(levels, links, **kw) -> MissionGraph:
    return MissionGraph.from_levels("dos", levels, links, source="attack", **kw)


def _good() -> MissionGraph:
    return _tiny([[("flood", "T1498"), ("botnet", "T1498")], [("packet", "T1498.001")]],
                 [("flood", "packet"), ("botnet", "packet")])


def test_good_tiny_graph_validates():
    graph = _good().validate()
    assert graph.key_concepts() == ["flood", "botnet"] and graph.parents("packet") == ["flood", "botnet"]


def test_rejects_cycle():
    graph = _good()
    graph.edges.append(("L1:packet", "L0:flood"))
    with pytest.raises(GraphValidationError, match="cycle"):
        graph.validate()


def test_rejects_duplicate_word_across_levels():
    graph = _tiny([[("flood", "T1498")], [("flood", "T1498.001")]], [])
    graph.edges.append(("L0:flood", "L1:flood"))
    with pytest.raises(GraphValidationError, match="appears at levels 0 and 1"):
        graph.validate()


@pytest.mark.parametrize("word", ["port scan", "Flood", "syn-flood", "", "x" * 40, "3way"])
def test_rejects_non_single_lowercase_words(word):
    graph = _tiny([[(word, "T1498")], [("packet", "T1498")]], [(word, "packet")])
    with pytest.raises(GraphValidationError):
        graph.validate()


def test_rejects_level_skip_and_wrong_sensor_or_embedding_edges():
    graph = _tiny([[("flood", "T1498")], [("packet", "T1498")], [("syn", "T1498")]],
                  [("flood", "packet"), ("packet", "syn")])
    graph.validate()
    skip = MissionGraph(graph.mission, graph.nodes, graph.edges + [("L0:flood", "L2:syn")], graph.source)
    with pytest.raises(GraphValidationError, match="skips or reverses levels"):
        skip.validate()
    bad_sensor = MissionGraph(graph.mission, graph.nodes, graph.edges + [(SENSOR_ID, "L1:packet")], graph.source)
    with pytest.raises(GraphValidationError, match="sensor"):
        bad_sensor.validate()
    early_embedding = MissionGraph(graph.mission, graph.nodes, graph.edges + [("L0:flood", EMBEDDING_ID)], graph.source)
    with pytest.raises(GraphValidationError, match="embedding"):
        early_embedding.validate()
    orphan = MissionGraph(graph.mission, graph.nodes, [e for e in graph.edges if e != ("L0:flood", "L1:packet")],
                          graph.source)
    with pytest.raises(GraphValidationError):
        orphan.validate()


def test_rejects_bad_provenance_and_size_bounds():
    with pytest.raises(GraphValidationError, match="provenance"):
        _tiny([[("flood", "chatgpt")]], []).validate()
    graph = _good()
    with pytest.raises(GraphValidationError, match="key concepts"):
        graph.validate(GraphBounds(max_key=1))
    with pytest.raises(GraphValidationError, match="nodes"):
        graph.validate(GraphBounds(max_nodes=2))
    empty_level = MissionGraph("dos", [ConceptNode("L0:flood", "flood", 0, "T1498"),
                                       ConceptNode("L2:syn", "syn", 2, "T1498")],
                               [(SENSOR_ID, "L0:flood"), ("L2:syn", EMBEDDING_ID)])
    with pytest.raises(GraphValidationError, match="level 1 is empty"):
        empty_level.validate()


# ---- exports ---------------------------------------------------------------------------------------


def test_json_round_trip(graphs, tmp_path):
    graph = graphs["reconnaissance"]
    text = graph.to_json()
    assert json.loads(text)["version"] == 1 and json.loads(text)["format"] == "packetclip.mission-graph"
    assert MissionGraph.from_json(text).to_dict() == graph.to_dict()
    path = tmp_path / "recon.json"
    graph.to_json(path)
    assert MissionGraph.load(path).to_dict() == graph.to_dict()
    newer = json.loads(text) | {"version": 99}
    with pytest.raises(PacketClipError, match="unsupported version"):
        MissionGraph.from_dict(newer)


def test_graphml_is_readable_by_networkx(graphs, tmp_path):
    graph = graphs["dos"]
    path = graph.write_graphml(tmp_path / "dos.graphml")
    g = nx.read_graphml(path)
    assert g.number_of_nodes() == len(graph.nodes) + 2 and g.number_of_edges() == len(graph.edges)
    assert g.nodes[SENSOR_ID]["kind"] == "sensor" and g.nodes[EMBEDDING_ID]["kind"] == "embedding"
    node = graph.nodes[0]
    assert g.nodes[node.id]["word"] == node.word and int(g.nodes[node.id]["level"]) == 0
    assert g.nodes[node.id]["provenance"] == node.provenance
    assert nx.is_directed_acyclic_graph(g)


def test_png_is_written(graphs, tmp_path):
    path = graphs["brute-force"].write_png(tmp_path / "bf.png")
    import matplotlib.image as mpimg

    image = mpimg.imread(path)
    assert image.shape[0] > 400 and image.shape[1] > 800
    assert image[..., :3].std() > 0.05  # not a blank canvas


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=400))
def test_fuzz_graph_reader_random_bytes(tmp_path, data):
    path = tmp_path / "fuzz.json"
    path.write_bytes(data)
    with pytest.raises(PacketClipError):
        MissionGraph.load(path)


_VALID = _good().to_dict()


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_fuzz_graph_reader_mutated_documents(data):
    """Structural mutations of a valid file: only PacketClipError may come out (or a valid graph)."""
    doc = json.loads(json.dumps(_VALID))
    junk = st.one_of(st.none(), st.integers(-3, 5), st.text(max_size=6), st.lists(st.integers(), max_size=2),
                     st.dictionaries(st.text(max_size=3), st.integers(), max_size=2), st.booleans())
    for _ in range(data.draw(st.integers(1, 3))):
        where = data.draw(st.sampled_from(["top", "node", "edge"]))
        if where == "top":
            doc[data.draw(st.sampled_from(sorted(doc)))] = data.draw(junk)
        elif where == "node" and isinstance(doc.get("nodes"), list) and doc["nodes"]:
            node = doc["nodes"][data.draw(st.integers(0, len(doc["nodes"]) - 1))]
            if isinstance(node, dict):
                node[data.draw(st.sampled_from(["id", "word", "level", "provenance"]))] = data.draw(junk)
        elif isinstance(doc.get("edges"), list) and doc["edges"]:
            doc["edges"][data.draw(st.integers(0, len(doc["edges"]) - 1))] = data.draw(junk)
    try:
        MissionGraph.from_json(json.dumps(doc)).validate()
    except PacketClipError:
        pass


# ---- LLM answers: parsing, validation, fallback ---------------------------------------------------


@pytest.mark.parametrize("answer, expected", [
    ("flood, bandwidth, exhaustion, amplification, botnet", ["flood", "bandwidth", "exhaustion", "amplification", "botnet"]),
    ("Sure! Here are 5 key concepts: Flooding, Bandwidth, Packets, Botnet, SYN.",
     ["flooding", "bandwidth", "packet", "botnet", "syn"]),
    ("1. Flood\n2. Bandwidth exhaustion\n3. **Amplification**\n4. Reflection - sending spoofed\n5. Botnets",
     ["flood", "amplification", "reflection", "botnet"]),
    ("- Spoofing: faking source addresses\n- the\n- 12345\n- ICMP (ping)", ["spoofing", "icmp"]),
    ("Flood, flooding, floods, FLOOD, ddos", ["flood", "ddos"]),
    ("I'm sorry, but I cannot help with attacks.", []),
    ("", []),
])
def test_parse_word_list(answer, expected):
    assert parse_word_list(answer, limit=5) == expected


def test_parse_respects_exclusions_and_limit():
    assert parse_word_list("scan, port, banner, probe", limit=2, exclude_keys={"scan"}) == ["port", "banner"]
    assert parse_word_list(None, limit=3) == []  # type: ignore[arg-type]


def test_unusable_llm_answer_falls_back_to_attack(source):
    vocab = source.vocabulary("dos")
    builder = LayeredBuilder("dos", vocab.banned_keys)
    # Key level: a refusal gives nothing, so all six key concepts come from ATT&CK, with technique ids.
    llm, fb = merge_with_fallback(builder, None, parse_word_list("I cannot help with that.", limit=6), vocab.ranked(), 6)
    assert (llm, fb) == (0, 6)
    builder.close_level()
    keys = [w for w, _ in builder.levels[0]]
    # Level 1: a partly usable answer keeps its valid words ("llm") and fills the rest from ATT&CK.
    parent = keys[0]
    answer = parse_word_list(f"bandwidth, the, port scan, {keys[1]}", limit=2,
                             exclude_keys=set(builder.used_keys))
    assert answer == ["bandwidth"]
    llm, fb = merge_with_fallback(builder, parent, answer, vocab.associated(parent) + vocab.ranked(), 2)
    assert (llm, fb) == (1, 1)
    for other in keys[1:]:
        merge_with_fallback(builder, other, [], vocab.associated(other) + vocab.ranked(), 2)
    builder.close_level()
    graph = builder.graph(source="llm:test", meta={}).validate()
    assert graph.concept_provenance("bandwidth") == "llm"
    assert all(p in mission_spec("dos").techniques for p in (n.provenance for n in graph.nodes if n.word != "bandwidth"))


def test_llm_source_follows_the_procedure_and_never_keeps_the_worked_example(source):
    """Prompts: V key concepts, then per concept associated words avoiding every earlier word; a worked
    example turn shows the format, and a model that parrots it does not get its words into the graph."""
    from packetclip.knowledge.llm import EXAMPLE_WORDS, LLMSource
    from packetclip.language.chat import ChatBackend, ChatCompletion

    class Parrot(ChatBackend):
        name, model = "parrot", "test"

        def __init__(self):
            self.seen = []

        def complete(self, messages, *, max_tokens=128, temperature=0.0, seed=0):
            self.seen.append(messages)
            return ChatCompletion(text="email, link, drain, overwhelm, saturate, choke, starve, stall")

    chat = Parrot()
    graph = LLMSource(chat, fallback=source, retries=0).build("dos", n_key=3, n_levels=2, per_node=1, seed=0)
    graph.validate()
    words = graph.concepts()
    assert not set(words) & EXAMPLE_WORDS
    assert graph.key_concepts() == ["drain", "overwhelm", "saturate"]
    assert all(n.provenance == "llm" for n in graph.nodes if n.level == 0)
    # One question for the key concepts, then one per concept of each level but the last.
    assert graph.meta["llm_calls"] == 1 + 3 + len(graph.concepts(1)) == len(chat.seen)
    first, later = chat.seen[0], chat.seen[-1]
    assert [m["role"] for m in first] == ["system", "user", "assistant", "user"]
    assert "3 single-word key concepts" in first[-1]["content"]
    # The last question avoids the words of every earlier level.
    assert all(w in later[-1]["content"].split("Do not use these words:")[1] for w in graph.concepts(0))


def test_llm_source_with_real_smollm2(cache_dir):
    """The paper's prompting procedure with the real offline SmolLM2 (skipped where the model is not installed)."""
    from packetclip.knowledge.llm import LLMSource
    from packetclip.language.chat import get_chat_backend

    try:
        backend = get_chat_backend("smollm2")
        backend.chat([{"role": "user", "content": "Hi"}], max_tokens=1)
    except PacketClipError as err:
        pytest.skip(f"smollm2 backend unavailable: {err}")
    # A small graph and short answers keep this affordable on a CPU: a few words need well under 16 tokens.
    source = LLMSource(backend, fallback=AttackSource(cache_dir=cache_dir, temperature=0.0), retries=0,
                       max_tokens=16)
    graph = source.build("dos", n_key=2, n_levels=1, per_node=1, seed=0)
    graph.validate()
    assert graph.meta["llm_calls"] == 3 and graph.meta["llm_words"] + graph.meta["fallback_words"] == len(graph.nodes)
    assert graph.source.startswith("llm:")


# ---- CLI ---------------------------------------------------------------------------------------------


def _cli(*args: str, cache: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PACKETCLIP_CACHE=str(cache))
    return subprocess.run([sys.executable, "-m", "packetclip.cli", *args], capture_output=True, text=True,
                          timeout=300, env=env)


def test_cli_kg_build_and_show(tmp_path, cache_dir, source):
    source.corpus  # noqa: B018 - warm the cache the CLI reads
    out = tmp_path / "kg"
    result = _cli("kg", "build", "--mission", "dos", "--source", "attack", "--out", str(out),
                  "--cache-dir", str(cache_dir), cache=tmp_path / "unused-cache")
    assert result.returncode == 0, result.stderr
    assert {p.name for p in out.iterdir()} == {"dos.json", "dos.graphml", "dos.png"}
    assert "flood" in result.stdout
    shown = _cli("kg", "show", str(out), cache=cache_dir)
    assert shown.returncode == 0, shown.stderr
    assert "key concepts" in shown.stdout and "level 2" in shown.stdout and "T1499" in shown.stdout


@pytest.mark.parametrize("args", [
    ["kg", "build", "--mission", "exfiltration", "--out", "{tmp}/kg"],
    ["kg", "build", "--mission", "dos", "--source", "oracle", "--out", "{tmp}/kg"],
    ["kg", "show", "{tmp}/missing"],
    ["kg", "show", "{tmp}/bad.json"],
])
def test_cli_bad_input_is_one_line_exit_2(tmp_path, cache_dir, args):
    (tmp_path / "bad.json").write_text('{"format": "packetclip.mission-graph", "version": 1, "nodes": 3}')
    result = _cli(*[a.format(tmp=tmp_path) for a in args], cache=cache_dir)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("packetclip: error:") and "Traceback" not in result.stderr


@pytest.mark.parametrize("spelling,key", [("recon", "reconnaissance"), ("RECON", "reconnaissance"),
                                          ("brute", "brute-force"), ("bruteforce", "brute-force"),
                                          ("brute_force", "brute-force"), ("Brute Force", "brute-force"),
                                          ("Denial of Service", "dos")])
def test_mission_short_spellings(spelling, key):
    assert mission_spec(spelling).key == key


def test_knowledge_cache_follows_the_one_cache_helper(monkeypatch, tmp_path):
    """ATT&CK corpus and chat models live under util.cache.cache_dir, read at call time (not import time)."""
    from packetclip.knowledge.attack import default_cache_dir
    from packetclip.language.chat import default_model_cache_dir
    from packetclip.util.cache import cache_dir as shared_cache_dir

    monkeypatch.setenv("PACKETCLIP_CACHE", str(tmp_path))
    assert default_cache_dir() == shared_cache_dir("knowledge") == tmp_path / "knowledge"
    assert default_model_cache_dir() == tmp_path / "models"


def test_size_errors_name_the_cli_flags():
    for kwargs, flag in (({"n_key": 0}, "--n-key"), ({"n_levels": 7}, "--levels"), ({"per_node": 9}, "--per-node")):
        with pytest.raises(PacketClipError, match=flag):
            AttackSource().build("dos", **kwargs)
