"""Reasoning: bad graphs refused in one line, the bundle reloads to identical scores, streaming equals batch
scoring, explanations name concepts of the predicted mission's graph.

One module-scoped bundle trained for two epochs on 30 s of lab traffic, with a small hashed text side so the
file runs in well under a minute on one core (the real text encoder is exercised by the benchmark).
"""

from __future__ import annotations

import hashlib
import subprocess
import sys

import numpy as np
import pytest
import torch

from packetclip.knowledge import load_default_graph
from packetclip.knowledge.graph import ConceptNode, MissionGraph
from packetclip.reasoning.bundle import Bundle
from packetclip.reasoning.graphs import ReasoningGraphError, check_graph, graph_tensors
from packetclip.reasoning.train import ReasoningSettings, train_bundle
from packetclip.reasoning.windows import past_windows


class HashText:
    """Deterministic 32-d word vectors (hash-seeded): enough for a structural test, no model download."""

    fingerprint = "hash-text-32"

    def embed(self, texts):
        out = []
        for t in texts:
            seed = int(hashlib.sha256(t.encode()).hexdigest()[:8], 16)
            v = np.random.default_rng(seed).standard_normal(32).astype(np.float32)
            out.append(v / np.linalg.norm(v))
        return np.stack(out)

    def describe(self):
        return {"fingerprint": self.fingerprint, "model": "hash"}

    @property
    def dim(self):
        return 32


def _graph(nodes, edges):
    return MissionGraph("dos", [ConceptNode(f"L{lv}:{w}", w, lv, "T1498") for w, lv in nodes], edges)


def test_bad_graphs_are_refused_in_one_line():
    cycle = _graph([("flood", 0), ("volume", 1)],
                   [("__sensor__", "L0:flood"), ("L0:flood", "L1:volume"), ("L1:volume", "L0:flood"),
                    ("L1:volume", "__embedding__")])
    empty = _graph([("flood", 0), ("volume", 2)],
                   [("__sensor__", "L0:flood"), ("L0:flood", "L2:volume"), ("L2:volume", "__embedding__")])
    unknown = _graph([("flood", 0), ("volume", 1)],
                     [("__sensor__", "L0:flood"), ("L0:flood", "L1:volume"), ("L0:flood", "L1:zzzq"),
                      ("L1:volume", "__embedding__")])
    for graph, words in ((cycle, "cycle"), (empty, "level 1 is empty"), (unknown, "unknown word 'zzzq'")):
        with pytest.raises(ReasoningGraphError) as err:
            check_graph(graph)
        assert words in str(err.value) and "\n" not in str(err.value)


def test_graph_tensors_follow_the_levels():
    g = load_default_graph("dos")
    gt = graph_tensors(g, HashText().embed)
    assert [len(w) for w in gt.words] == [len(lv) for lv in g.levels()]
    for lv, a in enumerate(gt.adjacency, start=1):
        assert a.shape == (len(gt.words[lv]), len(gt.words[lv - 1]))
        assert np.allclose(a.sum(1), 1.0)
    assert np.allclose(np.linalg.norm(gt.vectors[0], axis=1), 1.0)


def test_past_windows_only_look_back():
    keys = np.array(["a", "b", "a", "a", "b"], dtype=object)
    times = np.array([5, 1, 2, 9, 3])
    idx, lengths, _ = past_windows(keys, times, 2)
    assert lengths.tolist() == [2, 1, 1, 2, 2]
    assert idx[0].tolist() == [2, 0] and idx[3].tolist() == [0, 3] and idx[2].tolist() == [2, -1]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    from packetclip.lab.synth import SynthLab

    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("reasoning")
    SynthLab(duration_s=30, seed=2, classes="paper").generate(base / "lab", progress=False)
    settings = ReasoningSettings(epochs=2, align_steps=60, describe_flows=300, window=8, time_step="src")  # windows exercised
    b, summary = train_bundle([base / "lab"], base / "bundle", settings=settings, text_side=HashText())
    return b, base


def test_bundle_reloads_to_identical_scores(bundle):
    b, base = bundle
    first = b.score_workspace(base / "lab")
    again = Bundle.load(base / "bundle").score_workspace(base / "lab")
    assert len(first) > 100
    np.testing.assert_array_equal(first.filter(like="p_").to_numpy(), again.filter(like="p_").to_numpy())
    assert (first["mission"] == again["mission"]).all()
    assert 0.0 <= b.threshold <= 1.0


def test_streaming_equals_batch_scoring(bundle):
    from packetclip.traffic.workspace import Workspace

    b, base = bundle
    ws = Workspace.open(base / "lab")
    rows = ws.flows().sort_values("first_ts_ns", kind="stable").head(80).reset_index(drop=True)
    emb = b.embed(ws, rows["flow_id"])
    batch = b.score(emb, keys=b.sequence_keys(rows), times_ns=rows["first_ts_ns"].to_numpy())
    scorer = b.stream()
    streamed = [scorer.push(emb[i], ts_ns=int(r.first_ts_ns), src_ip=r["Src IP"], dst_ip=r["Dst IP"],
                            flow_id=int(r.flow_id)) for i, r in rows.iterrows()]
    np.testing.assert_allclose([s["score"] for s in streamed], batch["score"].to_numpy(), atol=1e-5)
    held = len(scorer)
    assert held > 0 and scorer.expire(int(rows["first_ts_ns"].max()) + 10**15) == held and len(scorer) == 0


def test_explanations_name_concepts_of_the_predicted_missions_graph(bundle):
    b, base = bundle
    table = b.score_workspace(base / "lab", explain=False)
    attack = [m for m in b.missions if m != "Benign"]
    probs = table[[f"p_{m}" for m in attack]].to_numpy()
    pick = int(np.argmax(probs.max(1)))
    predicted = attack[int(probs[pick].argmax())]
    explained = b.score_workspace(base / "lab", flow_ids=table["flow_id"].iloc[[pick]], explain=True)
    concepts = explained["concepts"].iloc[0]
    branch = b.gnn.config.graphs[b.branch_missions.index(predicted)]
    words = {w for level in branch["words"] for w in level}
    assert concepts and all(w in words for w, _, _ in concepts)
    assert all(t.startswith("T") or t == "llm" for _, t, _ in concepts)
    assert predicted in explained["explanation"].iloc[0]


def test_train_cli_refuses_a_missing_workspace_in_one_line(tmp_path):
    run = subprocess.run([sys.executable, "-m", "packetclip.cli", "train", str(tmp_path / "nope"), "--out",
                          str(tmp_path / "b")], capture_output=True, text=True)
    assert run.returncode == 2 and len(run.stderr.strip().splitlines()) == 1
