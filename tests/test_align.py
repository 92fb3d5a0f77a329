"""Alignment on a small lab capture: the losses, save/load, encoder refusal, search and faithful descriptions.

One module-scoped workspace (60 s of lab traffic, split by flow, described) and one tiny randomly initialised
Lens keep the whole file to a few minutes on one core.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from packetclip.align import AlignModel, TrainSettings, random_lens
from packetclip.align.api import train_alignment
from packetclip.align.loss import clip_loss, multi_positive_loss
from packetclip.align.search import SearchIndex, search
from packetclip.align.sides import TextSide, TrafficSide
from packetclip.align.zero_shot import FINE_CLASSES, classify, zero_shot_classifier
from packetclip.errors import CheckpointError
from packetclip.traffic.workspace import Workspace

SYN_QUERY = "a swarm of TCP handshake requests from spoofed addresses that are never completed"   # names no class


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    from packetclip.lab.synth import SynthLab
    from packetclip.language.describe import Describer
    from packetclip.language.workspace import describe_workspace
    from packetclip.traffic.splits import split_workspace

    root = tmp_path_factory.mktemp("align") / "lab"
    SynthLab(duration_s=60, seed=1).generate(root, progress=False)
    with pytest.warns(Warning):  # a 60 s capture has classes with a single flow group
        split_workspace(root, by="flow", seed=0)
    describe_workspace(root, Describer("rules", per_flow=2, seed=0), limit=600)
    return Workspace.open(root)


@pytest.fixture(scope="module")
def trained(lab, tmp_path_factory):
    base = tmp_path_factory.mktemp("models")
    lens = random_lens(base / "lens", seed=0)
    out = base / "align"
    model, history, info = train_alignment(lab.root, out, traffic="packet+context", encoder=lens,
                                           settings=TrainSettings(steps=600, seed=0))
    return model, out, lens, history


def test_multi_positive_equals_clip_with_one_positive_per_row_and_lower_with_duplicates():
    g = torch.Generator().manual_seed(0)
    a = torch.nn.functional.normalize(torch.randn(8, 16, generator=g), dim=1)
    b = torch.nn.functional.normalize(torch.randn(8, 16, generator=g), dim=1)
    scale = torch.tensor(2.0)
    assert torch.allclose(multi_positive_loss(a, b, scale, torch.arange(8)), clip_loss(a, b, scale), atol=1e-6)
    same = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    assert multi_positive_loss(a, b, scale, same) < clip_loss(a, b, scale)


def test_training_lowers_the_loss_and_keeps_the_temperature_clamped(trained):
    model, _, _, history = trained
    losses = [h["loss"] for h in history if "loss" in h]
    assert losses[-1] < losses[0]
    assert 1.0 <= model.logit_scale.detach().exp().item() <= 100.0 + 1e-3
    assert {"loss_clip", "loss_multi_positive"} <= set(history[-1])


def test_saved_model_reloads_to_identical_zero_shot_predictions(trained, lab):
    model, out, lens, _ = trained
    again = AlignModel.from_pretrained(out)
    text, side = TextSide(), TrafficSide.load("packet+context", lens)
    x = side.embed(lab, lab.split_flow_ids("test")[:200])
    first = classify(model, x, zero_shot_classifier(model, text, FINE_CLASSES))
    second = classify(again, x, zero_shot_classifier(again, text, FINE_CLASSES))
    assert np.array_equal(first.argmax(1), second.argmax(1))
    np.testing.assert_allclose(first, second, rtol=0, atol=1e-6)


def test_damaged_checkpoint_is_refused(trained, tmp_path):
    from safetensors.torch import save_file

    model, _, _, _ = trained
    model.save_pretrained(tmp_path)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["traffic_proj.weight"] = state["traffic_proj.weight"][:, :-1].contiguous()
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointError, match="shape"):
        AlignModel.from_pretrained(tmp_path)


def test_model_refuses_a_workspace_embedded_with_another_encoder(trained, lab, tmp_path):
    _, out, _, _ = trained
    other = random_lens(tmp_path / "other-lens", seed=1)
    result = subprocess.run([sys.executable, "-m", "packetclip.cli", "search", str(lab.root), SYN_QUERY,
                             "--model", str(out), "--encoder", str(other), "--threads", "1"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "encoder" in lines[0] and "Traceback" not in result.stderr


def test_syn_flood_flows_come_back_for_a_query_without_the_class_name(trained, lab):
    model, _, lens, _ = trained
    side, text = TrafficSide.load("packet+context", lens), TextSide()
    index = SearchIndex.build(model, side, lab)
    assert any(lab.path("search").glob("*.safetensors"))          # persisted in the workspace
    hits = search(model, side, text, lab, SYN_QUERY, top=10, index=index)
    assert len(hits) == 10
    assert (hits["label"] == "SYN Flood").any(), hits[["label", "similarity"]]
    assert hits["similarity"].is_monotonic_decreasing


def test_descriptions_of_every_class_are_faithful(lab):
    from packetclip.language.faithfulness import violations

    desc = lab.descriptions()
    assert desc["label"].nunique() >= 8
    bad = violations(desc, lab.labelled_flows())
    assert bad.empty, bad[["label", "rule", "claim"]].drop_duplicates().to_string()


def test_faithfulness_flags_claims_the_flow_does_not_support(lab):
    from packetclip.language.context import add_host_context
    from packetclip.language.facts import FlowFacts, resolve_columns
    from packetclip.language.faithfulness import check

    flows = add_host_context(lab.labelled_flows())
    cols = resolve_columns(flows.columns)
    syn = flows[(flows["label"] == "SYN Flood") & (flows["Total Length of Fwd Packet"] == 0)].iloc[0]
    facts = FlowFacts.from_row(syn.to_dict(), cols)
    claims = {r for r, _, _ in check("A network traffic of SYN Flood. The source sends 1,816 such requests to one web "
                                     "server within 10 seconds, probing known paths for weaknesses.", facts, "SYN Flood")}
    assert "web_request" in claims
    harmless = check("A network traffic of ICMP Flood. Normal, harmless traffic: its source opens only 1 flow.",
                     facts, "ICMP Flood")
    assert any(r == "benign_claim" for r, _, _ in harmless)
    assert not check("A network traffic of SYN Flood. Only a handshake request, never followed up, so the connection "
                     "stays half-open.", facts, "SYN Flood")


def test_open_set_subset_drops_the_unseen_classes_and_reindexes_flows():
    from packetclip.align.openset import seen_subset
    from packetclip.align.train import PairData

    data = PairData(traffic=np.arange(8, dtype=np.float32).reshape(4, 2), text=np.eye(6, dtype=np.float32),
                    flow_row=np.array([0, 0, 1, 2, 3, 3]), groups=np.array([0, 0, 1, 2, 0, 0]),
                    classes=["A", "B", "C"])
    sub = seen_subset(data, ["A", "C"])
    assert sub.classes == ["A", "C"]
    assert sub.text.shape[0] == 5 and list(sub.groups) == [0, 0, 1, 0, 0]
    np.testing.assert_array_equal(sub.traffic[sub.flow_row], data.traffic[[0, 0, 2, 3, 3]])


def test_search_feedback_pulls_the_query_toward_flows_whose_descriptions_match():
    from packetclip.align.search import Lexicon

    index = SearchIndex(np.array([10, 11, 12]), np.eye(3, dtype=np.float32))
    lexicon = Lexicon(np.array([11, 12, 13]), ["the host returns unreachable errors for each datagram",
                                               "a small UDP datagram to the resolver, answered",
                                               "another UDP datagram to the resolver, answered"])
    assert list(lexicon.best("datagrams with unreachable errors", 1)) == [11]   # rare words weigh most
    q = index.expand(np.array([1.0, 0.0, 0.0]), "unreachable errors", lexicon, k=1)
    assert np.isclose(np.linalg.norm(q), 1.0) and q[1] > 0.5 and q[2] == 0.0
    ids, _ = index.query(q, top=2)
    assert set(ids) == {10, 11}
    np.testing.assert_allclose(index.expand(np.array([2.0, 0.0, 0.0]), "x", None), [1, 0, 0])
    assert len(lexicon.best("nothing in common", 5)) == 0
