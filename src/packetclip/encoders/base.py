"""One contract for every encoder: an HF-style config with ``model_type``, and the methods later stages call.

Traffic encoders (Lens, flow-table, ET-BERT) all offer ``embed_flows(source, flow_ids) -> float32 [n, d]``,
``fingerprint``, ``device`` and ``embed_dim``; text encoders offer ``embed_texts(texts) -> float32 [n, d]``
and ``fingerprint``. ``source`` is a :class:`~packetclip.traffic.workspace.Workspace` (or its folder), in
which case embeddings go through the workspace's embedding store (computed once, then read from disk), or
in-memory frames (packet views or a flow table), computed directly.

Seeding never touches process-wide state: :func:`local_seed` runs a block under a forked torch RNG.
"""

from __future__ import annotations

import abc
import contextlib
import hashlib
import json
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, ClassVar, Iterator, Sequence

import numpy as np

from packetclip.errors import CheckpointError, PacketClipError


class EncoderConfig:
    """Base of every encoder config (dataclasses): ``model_type`` plus ``to_dict`` / ``from_dict`` / files.

    ``config.json`` is ``{"model_type": ..., <the dataclass fields>}``; unknown keys and a wrong
    ``model_type`` are a one-line :class:`CheckpointError` (a checkpoint must describe itself exactly).
    """

    model_type: ClassVar[str] = ""

    def to_dict(self) -> dict:
        out = {"model_type": self.model_type}
        out.update(asdict(self))
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def upgrade(cls, data: dict) -> dict:
        """Map an older saved layout onto the current one (override where a layout changed)."""
        return data

    @classmethod
    def from_dict(cls, data: dict, *, path: str | None = None):
        data = cls.upgrade(dict(data))
        kind = data.pop("model_type", cls.model_type)
        if kind != cls.model_type:
            raise CheckpointError(f"config.json is a {kind!r} config, not {cls.model_type!r}", path=path)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise CheckpointError(f"unknown config keys: {', '.join(unknown)}", path=path)
        try:
            return cls(**data)
        except PacketClipError as err:
            raise CheckpointError(f"invalid {cls.model_type} config: {err.detail}", path=path) from None
        except (TypeError, ValueError) as err:
            raise CheckpointError(f"invalid {cls.model_type} config: {err}", path=path) from None

    def save(self, directory: str | Path) -> Path:
        from packetclip.encoders._weights import CONFIG_NAME

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / CONFIG_NAME).write_text(self.to_json())
        return directory / CONFIG_NAME

    @classmethod
    def load(cls, directory: str | Path):
        from packetclip.encoders._weights import CONFIG_NAME, read_config

        return cls.from_dict(read_config(Path(directory)), path=str(Path(directory) / CONFIG_NAME))


@contextlib.contextmanager
def local_seed(seed: int) -> Iterator[None]:
    """Run a block with torch's RNG seeded to ``seed``, restoring the caller's RNG state afterwards.

    Library code uses this (or a ``torch.Generator``) instead of ``torch.manual_seed``, so building a model
    never changes the random stream of the program that called it.
    """
    import torch

    devices: list[int] = []
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        devices = list(range(torch.cuda.device_count()))
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seed))
        yield


def state_fingerprint(model_type: str, config: dict, state: dict) -> str:
    """sha256 (24 hex digits) of the model type, the config and every tensor's name, dtype, shape and bytes."""
    import torch

    digest = hashlib.sha256()
    digest.update(model_type.encode())
    digest.update(json.dumps(config, sort_keys=True, default=str).encode())
    for name in sorted(state):
        t = state[name].detach()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        digest.update(t.cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:24]


class _Fingerprinted:
    """Caches the weight hash until a tensor changes (torch bumps ``_version`` on every in-place update)."""

    _fp_cache: tuple | None = None

    def _fingerprint_of(self, module, config: dict, model_type: str) -> str:
        state = _unique_state(module)
        version = (json.dumps(config, sort_keys=True, default=str),
                   tuple((k, v.data_ptr(), v._version) for k, v in state.items()))
        if self._fp_cache is None or self._fp_cache[0] != version:
            self._fp_cache = (version, state_fingerprint(model_type, config, state))
        return self._fp_cache[1]


def _unique_state(module) -> dict:
    """State dict without tied aliases (one entry per storage)."""
    seen: set[int] = set()
    out = {}
    for name, tensor in module.state_dict().items():
        ptr = tensor.data_ptr()
        if ptr in seen and tensor.numel() > 0:
            continue
        seen.add(ptr)
        out[name] = tensor
    return out


class TrafficEncoder(_Fingerprinted, abc.ABC):
    """What every traffic encoder offers; see the module docstring.

    Subclasses implement :meth:`_embed_workspace_flows` (rows for ``flow_ids`` of a workspace, no cache),
    :meth:`_embed_frames` (in-memory input), ``embed_dim``, ``device``, ``fingerprint`` and persistence.
    """

    model_type: ClassVar[str] = ""

    @property
    @abc.abstractmethod
    def embed_dim(self) -> int: ...

    @property
    @abc.abstractmethod
    def device(self): ...

    @property
    @abc.abstractmethod
    def fingerprint(self) -> str: ...

    def store_settings(self) -> dict:
        """Settings beyond config and weights that change the embeddings (part of the store key)."""
        return {}

    def embed_flows(self, source: Any, flow_ids: Sequence[int] | np.ndarray | None = None, *,
                    batch_size: int | None = None, progress: bool = False, cache: bool = True) -> np.ndarray:
        """``float32 [n, embed_dim]``, one row per flow id, in the order of ``flow_ids``.

        ``source``: a :class:`Workspace` or its folder (``flow_ids`` None: every flow of its flow table;
        results go through ``Workspace.embeddings`` unless ``cache=False``), or in-memory frames (see the
        subclass; ``flow_ids`` None: every flow in them, sorted by id).
        """
        from packetclip.traffic.workspace import Workspace

        if isinstance(source, (str, Path)):
            source = Workspace.open(source)
        if isinstance(source, Workspace):
            ids = source.flow_ids() if flow_ids is None else np.asarray(flow_ids, np.int64).reshape(-1)
            kwargs = {"progress": progress, **({} if batch_size is None else {"batch_size": batch_size})}

            def compute(missing: np.ndarray) -> np.ndarray:
                return self._embed_workspace_flows(source, missing, **kwargs)

            if not cache:
                uniq, inverse = np.unique(ids, return_inverse=True)
                return compute(uniq)[inverse.reshape(-1)] if len(uniq) else np.zeros((0, self.embed_dim), np.float32)
            if len(ids) == 0:
                return np.zeros((0, self.embed_dim), np.float32)
            return source.embeddings(self.fingerprint, ids, compute, **self.store_settings())
        return self._embed_frames(source, flow_ids, batch_size=batch_size, progress=progress)

    @abc.abstractmethod
    def _embed_workspace_flows(self, workspace, flow_ids: np.ndarray, **kwargs) -> np.ndarray: ...

    @abc.abstractmethod
    def _embed_frames(self, frames, flow_ids, *, batch_size=None, progress=False) -> np.ndarray: ...


class TextEncoderBase(abc.ABC):
    """What every text encoder offers: ``embed_texts(texts) -> float32 [n, embed_dim]`` and a fingerprint."""

    @abc.abstractmethod
    def embed_texts(self, texts: Sequence[str], *, batch_size: int = 64, normalize: bool = True) -> np.ndarray: ...

    @property
    @abc.abstractmethod
    def fingerprint(self) -> str: ...

    @property
    @abc.abstractmethod
    def embed_dim(self) -> int: ...


def select_rows(have_ids: np.ndarray, rows: np.ndarray, wanted: np.ndarray, what: str, path=None) -> np.ndarray:
    """``rows`` (aligned with sorted ``have_ids``) re-ordered to ``wanted``; a missing id is one clear line."""
    have_ids = np.asarray(have_ids, np.int64)
    wanted = np.asarray(wanted, np.int64)
    pos = np.searchsorted(have_ids, wanted)
    found = np.zeros(len(wanted), bool)
    if len(have_ids):
        found = (pos < len(have_ids)) & (have_ids[np.minimum(pos, len(have_ids) - 1)] == wanted)
    if not found.all():
        missing = wanted[~found]
        raise PacketClipError(f"{len(missing)} requested flow(s) have no {what} (first: {int(missing[0])})",
                              path=None if path is None else str(path))
    return rows[pos]


# --- one factory ------------------------------------------------------------------------------------------

#: ``model_type`` in config.json -> ``(module, class)`` with a ``from_pretrained(path, device=...)``.
ENCODER_TYPES: dict[str, tuple[str, str]] = {
    "packetclip-lens": ("packetclip.encoders.lens", "LensModel"),
    "packetclip-flowtable": ("packetclip.encoders.flowtable", "FlowTableEncoder"),
    "packetclip-etbert": ("packetclip.encoders.etbert", "ETBertEncoder"),
}


def load_encoder(path: str | Path, *, device: str = "cpu"):
    """Load any saved encoder by the ``model_type`` of its ``config.json`` (HF ``AutoModel`` style); ``path``
    may also name a shipped encoder (``"lens-tiny"``, :mod:`packetclip.encoders.pretrained`).

    Traffic encoders come back as :class:`TrafficEncoder`; a sentence-transformers / Hugging Face text model
    folder (``modules.json``, or a config.json without a packetclip ``model_type``) as a
    :class:`~packetclip.encoders.text.TextEncoder`. Older config layouts of our checkpoints still load.
    """
    import importlib

    from packetclip.encoders._weights import CONFIG_NAME, read_config

    from packetclip.encoders.pretrained import resolve_encoder, shipped_names

    path = resolve_encoder(path)
    if not path.is_dir():
        raise CheckpointError(f"encoder folder not found (nor a shipped encoder name: {', '.join(shipped_names())})",
                              path=str(path))
    if (path / "modules.json").is_file():
        from packetclip.encoders.text import TextEncoder

        return TextEncoder(path, device=device)
    raw = read_config(path)
    kind = raw.get("model_type")
    if kind in ENCODER_TYPES:
        module, name = ENCODER_TYPES[kind]
        return getattr(importlib.import_module(module), name).from_pretrained(path, device=device)
    if isinstance(kind, str) and kind.startswith("packetclip-"):
        raise CheckpointError(f"{kind!r} is not an encoder (known: {', '.join(ENCODER_TYPES)})",
                              path=str(path / CONFIG_NAME))
    if kind is not None:
        from packetclip.encoders.text import TextEncoder

        return TextEncoder(path, device=device)
    raise CheckpointError("config.json has no model_type: not a saved encoder", path=str(path / CONFIG_NAME))
