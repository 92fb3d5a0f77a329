"""ET-BERT compatibility: tokenizer, UER-py checkpoint import, fine-tuning baseline, FLOP counting."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from packetclip.encoders.etbert import (
    COMPLETE_VOCAB_SIZE, ETBertClassifier, ETBertConfig, ETBertEncoder, ETBertTokenizer, SPECIAL_TOKENS,
    count_flops, count_trainable_params, uer_expected_shapes,
)
from packetclip.errors import CheckpointError, PacketClipError

H, LAYERS, HEADS, FFN, POS = 32, 2, 2, 64, 40


# ----------------------------------------------------------------------------------------- helpers

def uer_state(vocab_size: int, seed: int = 0, heads=("mlm", "sop")) -> dict[str, torch.Tensor]:
    """A tiny checkpoint with UER-py's key names, written the way UER-py lays out a BERT + heads."""
    g = torch.Generator().manual_seed(seed)
    cfg = ETBertConfig(vocab_size=vocab_size, hidden_size=H, num_layers=LAYERS, num_heads=HEADS,
                       intermediate_size=FFN, max_position_embeddings=POS, seq_length=16)
    state = {}
    for name, shape in uer_expected_shapes(cfg).items():
        t = torch.randn(shape, generator=g) * 0.2
        if name.endswith(".gamma"):
            t = 1.0 + t
        state[name] = t
    if "mlm" in heads:
        for name, shape in {"target.mlm_linear_1.weight": (H, H), "target.mlm_linear_1.bias": (H,),
                            "target.layer_norm.gamma": (H,), "target.layer_norm.beta": (H,),
                            "target.mlm_linear_2.weight": (vocab_size, H),
                            "target.mlm_linear_2.bias": (vocab_size,)}.items():
            state[name] = torch.randn(shape, generator=g) * 0.2
    if "sop" in heads:
        for name, shape in {"target.nsp_linear_1.weight": (H, H), "target.nsp_linear_1.bias": (H,),
                            "target.nsp_linear_2.weight": (2, H), "target.nsp_linear_2.bias": (2,)}.items():
            state[name] = torch.randn(shape, generator=g) * 0.2
    return state


def uer_reference_forward(state, src, seg):
    """UER-py's BERT forward, written out from its layer definitions (post-LN, erf GELU, -10000 mask)."""

    def ln(x, prefix):
        mean = x.mean(-1, keepdim=True)
        std = x.std(-1, keepdim=True)
        return state[prefix + ".gamma"] * (x - mean) / (std + 1e-6) + state[prefix + ".beta"]

    def lin(x, prefix):
        return F.linear(x, state[prefix + ".weight"], state[prefix + ".bias"])

    b, s = src.shape
    dh = H // HEADS
    emb = (state["embedding.word_embedding.weight"][src]
           + state["embedding.position_embedding.weight"][torch.arange(s)][None]
           + state["embedding.segment_embedding.weight"][seg])
    hidden = ln(emb, "embedding.layer_norm")
    mask = (1.0 - (seg > 0).float()[:, None, None, :]) * -10000.0
    for i in range(LAYERS):
        p = f"encoder.transformer.{i}."
        q, k, v = (lin(hidden, p + f"self_attn.linear_layers.{j}").view(b, s, HEADS, dh).transpose(1, 2)
                   for j in range(3))
        probs = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(dh) + mask, dim=-1)
        ctx = (probs @ v).transpose(1, 2).reshape(b, s, H)
        inter = ln(lin(ctx, p + "self_attn.final_linear") + hidden, p + "layer_norm_1")
        ff = lin(inter, p + "feed_forward.linear_1")
        ff = ff * 0.5 * (1.0 + torch.erf(ff / math.sqrt(2.0)))
        hidden = ln(lin(ff, p + "feed_forward.linear_2") + inter, p + "layer_norm_2")
    pooled = torch.tanh(lin(hidden[:, 0], "target.nsp_linear_1"))
    return hidden, pooled


@pytest.fixture()
def uer_file(tmp_path):
    state = uer_state(COMPLETE_VOCAB_SIZE)
    path = tmp_path / "pretrained_model.bin"
    torch.save(state, path)
    return path, state


def one_line(err: pytest.ExceptionInfo) -> str:
    text = err.value.one_line()
    assert "\n" not in text
    return text


# ----------------------------------------------------------------------------------------- tokenizer

def test_bigram_text_and_complete_vocab_ids():
    tok = ETBertTokenizer(seq_length=8)
    assert len(tok) == COMPLETE_VOCAB_SIZE == 65541
    assert tok.vocab[:5] == list(SPECIAL_TOKENS) and (tok.pad_id, tok.cls_id) == (0, 2)
    assert ETBertTokenizer.bigram_text(bytes([0x45, 0x00, 0x00, 0x3C])) == "4500 0000 003c"
    assert tok.tokenize(bytes([0x45, 0x00, 0x00, 0x3C])) == ["4500", "0000", "003c"]

    views = np.array([[0x45, 0x00, 0x00, 0x3C, 0x12, 0x34], [0xFF, 0xEE, 0x01, 0, 0, 0]], dtype=np.uint8)
    ids, mask = tok.token_ids(views, lengths=[6, 3])
    assert ids.shape == mask.shape == (2, 8)
    assert ids[0].tolist() == [2, 5 + 0x4500, 5 + 0x0000, 5 + 0x003C, 5 + 0x3C12, 5 + 0x1234, 0, 0]
    assert mask[0].tolist() == [1, 1, 1, 1, 1, 1, 0, 0]
    assert ids[1].tolist() == [2, 5 + 0xFFEE, 5 + 0xEE01, 0, 0, 0, 0, 0]
    assert mask[1].tolist() == [1, 1, 1, 0, 0, 0, 0, 0]
    # truncation to seq_length (CLS + 7 bigrams) and skip_bytes (ET-BERT drops leading header bytes)
    long_ids, long_mask = tok.token_ids(np.arange(20, dtype=np.uint8)[None])
    assert long_ids[0, 1:].tolist() == [5 + i * 256 + i + 1 for i in range(7)] and long_mask.all()
    skip = ETBertTokenizer(seq_length=4, skip_bytes=2)
    assert skip.token_ids(np.arange(10, dtype=np.uint8)[None])[0][0, 1].item() == 5 + 2 * 256 + 3


def test_wordpiece_vocab_file_like_etbert(tmp_path):
    # ET-BERT's vocab mixes whole bigrams with WordPiece pieces; bigrams not in it are split greedily.
    vocab = list(SPECIAL_TOKENS) + ["0", "4", "5", "c", "3", "##0", "##5", "##c", "##3", "00", "##00",
                                     "4500", "003c", "##3c"]
    path = tmp_path / "encryptd_vocab.txt"
    path.write_text("\n".join(vocab) + "\n")
    tok = ETBertTokenizer.from_vocab_file(path, seq_length=10)
    assert not tok.every_bigram_is_one_token
    assert tok.tokenize(bytes([0x45, 0x00, 0x00, 0x3C])) == ["4500", "00", "##00", "003c"]
    assert tok.tokenize(bytes([0x50, 0x3C])) == ["5", "##0", "##3c"]
    assert tok.tokenize(bytes([0xAB, 0xCD])) == ["[UNK]"]
    ids, mask = tok.token_ids(np.array([[0x45, 0x00, 0x00, 0x3C]], dtype=np.uint8))
    expect = [tok.cls_id] + [tok.token_to_id[t] for t in ["4500", "00", "##00", "003c"]]
    assert ids[0, :5].tolist() == expect and mask[0].sum() == 5

    bad = tmp_path / "bad.txt"
    bad.write_text("0000\n0001\n")
    with pytest.raises(PacketClipError, match="special tokens") as err:
        ETBertTokenizer.from_vocab_file(bad)
    one_line(err)
    with pytest.raises(PacketClipError, match="2-D"):
        ETBertTokenizer().token_ids(np.zeros(5, dtype=np.uint8))
    with pytest.raises(PacketClipError, match="bytes"):
        ETBertTokenizer().token_ids(np.full((1, 4), 300))


# ----------------------------------------------------------------------------------------- UER import

def test_uer_checkpoint_lands_in_bert_and_matches_uer_forward(uer_file):
    path, state = uer_file
    enc = ETBertEncoder.from_uer_checkpoint(path, num_heads=HEADS)
    cfg = enc.config
    assert (cfg.vocab_size, cfg.hidden_size, cfg.num_layers, cfg.intermediate_size, cfg.max_position_embeddings) == \
        (COMPLETE_VOCAB_SIZE, H, LAYERS, FFN, POS)
    bert = dict(enc.model.named_parameters())
    assert torch.equal(bert["embeddings.word_embeddings.weight"], state["embedding.word_embedding.weight"])
    assert torch.equal(bert["embeddings.token_type_embeddings.weight"], state["embedding.segment_embedding.weight"][1:])
    assert torch.equal(bert["embeddings.LayerNorm.weight"], state["embedding.layer_norm.gamma"])
    for i in range(LAYERS):
        p, q = f"encoder.transformer.{i}.", f"encoder.layer.{i}."
        pairs = {"self_attn.linear_layers.0.weight": "attention.self.query.weight",
                 "self_attn.linear_layers.1.bias": "attention.self.key.bias",
                 "self_attn.linear_layers.2.weight": "attention.self.value.weight",
                 "self_attn.final_linear.weight": "attention.output.dense.weight",
                 "layer_norm_1.beta": "attention.output.LayerNorm.bias",
                 "feed_forward.linear_1.weight": "intermediate.dense.weight",
                 "feed_forward.linear_2.bias": "output.dense.bias",
                 "layer_norm_2.gamma": "output.LayerNorm.weight"}
        for uer, hf in pairs.items():
            assert torch.equal(bert[q + hf], state[p + uer]), (uer, hf)
    assert torch.equal(bert["pooler.dense.weight"], state["target.nsp_linear_1.weight"])
    assert enc.pooler_source_ == "target.nsp_linear_1" and set(enc.extras_) == {"mlm", "sop"}
    n_uer_encoder = sum(v.numel() for k, v in state.items() if not k.startswith("target.")) - H  # minus pad segment row
    assert sum(p.numel() for n, p in bert.items() if not n.startswith("pooler")) == n_uer_encoder

    # Same outputs as UER-py's own computation, padding included.
    g = torch.Generator().manual_seed(3)
    src = torch.randint(5, COMPLETE_VOCAB_SIZE, (3, 12), generator=g)
    seg = torch.ones(3, 12, dtype=torch.long)
    seg[1, 8:] = 0
    seg[2, 5:] = 0
    src[seg == 0] = 0
    ref_hidden, ref_pooled = uer_reference_forward(state, src, seg)
    with torch.no_grad():
        out = enc.model(input_ids=src, attention_mask=(seg > 0).long())
    real = seg > 0
    torch.testing.assert_close(out.last_hidden_state[real], ref_hidden[real], atol=2e-5, rtol=1e-5)
    torch.testing.assert_close(out.pooler_output, ref_pooled, atol=2e-5, rtol=1e-5)

    emb = enc.embed(np.random.default_rng(0).integers(0, 256, (4, 20), dtype=np.uint8))
    assert emb.shape == (4, H) and emb.dtype == np.float32 and np.isfinite(emb).all()


def test_uer_safetensors_and_vocab_file(tmp_path):
    from safetensors.torch import save_file

    vocab = list(SPECIAL_TOKENS) + [f"{i:02x}" for i in range(256)] + [f"##{i:02x}" for i in range(256)]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    state = uer_state(len(vocab), heads=())
    save_file(state, str(tmp_path / "model.safetensors"))
    enc = ETBertEncoder.from_uer_checkpoint(tmp_path / "model.safetensors", vocab_path=tmp_path / "vocab.txt",
                                            num_heads=HEADS)
    assert len(enc.tokenizer) == len(vocab) and enc.pooler_source_ is None and enc.extras_ == {}
    assert enc.tokenizer.tokenize(bytes([0x45, 0x00])) == ["45", "##00"]
    # without its vocabulary a non-standard embedding size is refused
    with pytest.raises(CheckpointError, match="vocab_path"):
        ETBertEncoder.from_uer_checkpoint(tmp_path / "model.safetensors", num_heads=HEADS)


@pytest.mark.parametrize("damage, message", [
    (lambda s: s.pop("encoder.transformer.1.layer_norm_2.beta"), "missing keys: encoder.transformer.1.layer_norm_2.beta"),
    (lambda s: s.__setitem__("encoder.margin_V", torch.zeros(H, 1)), "unexpected keys: encoder.margin_V"),
    (lambda s: s.__setitem__("encoder.transformer.0.feed_forward.linear_2.weight", torch.zeros(FFN, H)),
     "wrong shape for encoder.transformer.0.feed_forward.linear_2.weight"),
    (lambda s: s.pop("target.nsp_linear_2.bias"), "incomplete sop head"),
    (lambda s: s.__setitem__("embedding.segment_embedding.weight", torch.zeros(2, H)),
     "wrong shape for embedding.segment_embedding.weight"),
])
def test_uer_mismatches_are_one_line_errors(tmp_path, damage, message):
    state = uer_state(COMPLETE_VOCAB_SIZE)
    damage(state)
    path = tmp_path / "bad.bin"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as err:
        ETBertEncoder.from_uer_checkpoint(path, num_heads=HEADS)
    assert message in one_line(err) and str(path) in one_line(err)


def test_unreadable_checkpoints(tmp_path):
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"\x80\x04not a pickle at all" * 10)
    with pytest.raises(CheckpointError, match="weights_only") as err:
        ETBertEncoder.from_uer_checkpoint(garbage)
    one_line(err)

    import argparse

    evil = tmp_path / "evil.bin"  # an arbitrary object (old UER saves carried args): weights_only refuses it
    torch.save({"args": argparse.Namespace(a=1)}, evil)
    with pytest.raises(CheckpointError):
        ETBertEncoder.from_uer_checkpoint(evil)
    not_tensors = tmp_path / "numbers.bin"
    torch.save({"embedding.word_embedding.weight": 3}, not_tensors)
    with pytest.raises(CheckpointError, match="non-tensor"):
        ETBertEncoder.from_uer_checkpoint(not_tensors)
    with pytest.raises(CheckpointError, match="not found"):
        ETBertEncoder.from_uer_checkpoint(tmp_path / "absent.bin")
    bad_st = tmp_path / "bad.safetensors"
    bad_st.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{broken")
    with pytest.raises(CheckpointError, match="safetensors"):
        ETBertEncoder.from_uer_checkpoint(bad_st)


def test_given_config_must_match_checkpoint(uer_file):
    path, _ = uer_file
    wrong = ETBertConfig(hidden_size=H, num_layers=LAYERS, num_heads=HEADS, intermediate_size=FFN * 2,
                         max_position_embeddings=POS, seq_length=16)
    with pytest.raises(CheckpointError, match="wrong shape for encoder.transformer.0.feed_forward.linear_1"):
        ETBertEncoder.from_uer_checkpoint(path, config=wrong)


# ----------------------------------------------------------------------------------------- baseline

def toy_packets(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Masked-IPv4-like views: constant header bytes, a random length, the protocol byte and a payload
    marker that give the class, then random payload bytes."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    views = np.zeros((n, 40), dtype=np.uint8)
    views[:, 0], views[:, 8] = 0x45, 64
    views[:, 3] = rng.integers(40, 120, n)
    views[:, 9] = np.array([6, 17, 1])[y]
    views[:, 20:22] = np.array([[0x16, 0x03], [0x00, 0x35], [0x08, 0x00]], dtype=np.uint8)[y]
    views[:, 24:] = rng.integers(0, 256, (n, 16))
    return views, y


def tiny_config(**kw) -> ETBertConfig:
    return ETBertConfig.preset("tiny", seq_length=32, max_position_embeddings=64, **kw)


def test_classifier_learns_separable_packets_and_round_trips(tmp_path):
    xtr, ytr = toy_packets(160, seed=1)
    xte, yte = toy_packets(90, seed=2)
    names = np.array(["tls", "dns", "icmp"])
    # 80 AdamW steps: a BERT from its std-0.02 init sits on the ln(3) loss plateau for its first ~35 steps
    # (30 steps left it at chance; a plain nn.TransformerEncoder with the same init does the same).
    clf = ETBertClassifier(tiny_config(), epochs=4, batch_size=8, learning_rate=1e-3, seed=7)
    clf.fit(xtr, names[ytr])
    assert list(clf.classes_) == ["dns", "icmp", "tls"]
    acc = clf.score(xte, names[yte])
    assert acc >= 0.9, acc
    assert clf.loss_history_[-1] < clf.loss_history_[0]
    proba = clf.predict_proba(xte)
    assert proba.shape == (90, 3) and np.allclose(proba.sum(1), 1.0, atol=1e-5)

    saved = clf.save_pretrained(tmp_path / "clf")
    back = ETBertClassifier.from_pretrained(saved)
    np.testing.assert_allclose(back.predict_proba(xte), proba, atol=1e-6)
    assert list(back.predict(xte)) == list(clf.predict(xte))

    # a damaged save is refused with one line
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(saved / "model.safetensors"))
    tensors.pop("head.bias")
    save_file(tensors, str(saved / "model.safetensors"))
    with pytest.raises(CheckpointError, match="missing keys: head.bias") as err:
        ETBertClassifier.from_pretrained(saved)
    one_line(err)


def test_classifier_from_imported_checkpoint(uer_file):
    path, state = uer_file
    xtr, ytr = toy_packets(60, seed=3)
    clf = ETBertClassifier(n_classes=3, init_checkpoint=path, num_heads=HEADS, epochs=1, learning_rate=1e-3)
    with torch.no_grad():
        clf._build(3)
        start = clf.network_.bert.embeddings.word_embeddings.weight.clone()
    assert torch.equal(start, state["embedding.word_embedding.weight"])
    clf.fit(xtr, ytr)
    assert clf.config_.hidden_size == H and clf.predict(xtr).shape == (60,)
    with pytest.raises(PacketClipError, match="integers in"):
        ETBertClassifier(n_classes=2).fit(xtr, ytr)


def test_flop_counter_includes_attention():
    cfg = tiny_config()
    clf = ETBertClassifier(cfg, epochs=0)
    clf.fit(*toy_packets(4, seed=0))
    t, h, f, n_cls = cfg.seq_length, cfg.hidden_size, cfg.intermediate_size, len(clf.classes_)
    linear = cfg.num_layers * (4 * 2 * t * h * h + 2 * 2 * t * h * f) + 2 * h * h + 2 * h * n_cls
    attention = cfg.num_layers * 2 * (2 * t * t * h)
    assert clf.flops_per_packet() == linear + attention
    ids, mask = clf.example_inputs(3)
    assert count_flops(clf.network_, (ids, mask)) == 3 * (linear + attention)
    assert count_flops(clf.network_, {"input_ids": ids[:1], "attention_mask": mask[:1]}) == linear + attention
    assert clf.trainable_parameters() == count_trainable_params(clf.network_) > 65541 * h

    # plain torch attention modules are counted too
    mha = torch.nn.TransformerEncoderLayer(16, 2, 32, batch_first=True)
    x = torch.zeros(1, 10, 16)
    expect = 2 * 10 * 16 * 16 * 4 + 2 * 2 * 10 * 16 * 32 + 2 * 2 * 10 * 10 * 16
    assert count_flops(mha, x) == expect


def test_encoder_save_load_and_base_shape(tmp_path):
    enc = ETBertEncoder(tiny_config())
    views = np.random.default_rng(0).integers(0, 256, (5, 33), dtype=np.uint8)
    ref = enc.embed(views, pooling="mean")
    back = ETBertEncoder.from_pretrained(enc.save_pretrained(tmp_path / "enc"))
    np.testing.assert_allclose(back.embed(views, pooling="mean"), ref, atol=1e-6)
    with pytest.raises(CheckpointError, match="not an ET-BERT"):
        ETBertClassifier.from_pretrained(tmp_path / "enc")
    base = ETBertConfig.preset("base")
    assert (base.hidden_size, base.num_layers, base.num_heads, base.intermediate_size,
            base.max_position_embeddings) == (768, 12, 12, 3072, 512)
