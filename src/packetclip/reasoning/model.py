"""The MissionGNN-style reasoning model (PacketCLIP §3.4): a hierarchical GNN per mission graph over the aligned
traffic embedding, then a causal temporal transformer over a window of steps.

Per step ``t`` (one flow, see :mod:`packetclip.reasoning.windows`) and per mission graph:

- the **sensor** node holds the aligned traffic vector ``x_t`` (``E`` = the alignment's width);
- **key concepts** (level 0) receive ``h_n = GELU(P0 (x_t * w_n))``: ``D`` = 8 learned, weighted cosines between
  the traffic vector and the concept word's aligned text vector ``w_n``;
- **associated concepts** (level ``l``) receive the mean of their parents' states: ``h_j = GELU(Q_l mean(h_par) +
  U_l w_j)`` (``U_l w_j``: the node's own word, a per-node bias);
- the **embedding node** is ``GELU(R mean(h_last))``.

All of it is dense matmuls over the whole ``(batch x time)`` stack; the GNN only depends on its own step, so a
caller computes step features once per flow (:meth:`MissionGNN.step_features`) and the transformer reads windows
of them (:meth:`MissionGNN.temporal`). The embedding nodes of all missions are concatenated with the log time
since the previous step, projected to ``d_model`` = 128, run through a ``TransformerEncoder`` (8 heads) whose
mask lets step ``t`` see steps ``t - A + 1 .. t`` only (past-only, so scoring can stream) and an MLP to the
missions (plus a fine-class head).

There is no absolute position embedding: order enters through the time-gap feature and the mask. So with one
layer, a step's output depends only on the steps of its own window, and a long sequence can be scored in one
band-masked pass instead of one pass per window (:func:`band_logits`) with exactly the same result — 30 times
less work at A = 30.

Saved as ``config.json`` + ``model.safetensors`` (strict loading: missing/extra/mis-shaped tensors refused).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from packetclip.errors import CheckpointError, PacketClipError

MODEL_TYPE = "packetclip-reasoning"
CONFIG_NAME = "config.json"
MISSION_CLASSES = ("Benign", "DoS", "Reconnaissance", "Brute Force")


@dataclass
class ReasoningConfig:
    """Architecture (saved as ``config.json``); training knobs live in ``ReasoningSettings``."""

    embed_dim: int = 384
    node_dim: int = 8
    window: int = 30
    d_model: int = 128
    heads: int = 8
    layers: int = 1
    ff_dim: int = 256
    dropout: float = 0.1
    missions: list = field(default_factory=lambda: list(MISSION_CLASSES))
    fine_classes: list = field(default_factory=list)
    graphs: list = field(default_factory=list)      # tensors_to_dict(...) per attack mission, in model order
    time_step: str = "flow"
    seed: int = 0
    model_type: str = MODEL_TYPE

    def __post_init__(self) -> None:
        for name in ("embed_dim", "node_dim", "window", "d_model", "heads", "layers", "ff_dim"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise PacketClipError(f"{name} must be a positive integer, got {v!r}")
        if self.d_model % self.heads:
            raise PacketClipError(f"d_model ({self.d_model}) must be a multiple of heads ({self.heads})")
        if self.model_type != MODEL_TYPE:
            raise PacketClipError(f"model_type is {self.model_type!r}, expected {MODEL_TYPE!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict, *, path: str | None = None) -> "ReasoningConfig":
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise CheckpointError(f"unknown config keys: {', '.join(unknown)}", path=path)
        if data.get("model_type") != MODEL_TYPE:
            raise CheckpointError(f"not a reasoning model (model_type {data.get('model_type')!r})", path=path)
        try:
            return cls(**data)
        except (PacketClipError, TypeError) as err:
            raise CheckpointError(f"invalid reasoning config: {getattr(err, 'detail', err)}", path=path) from None


def band_mask(t: int, window: int, device=None) -> torch.Tensor:
    """Additive ``[t, t]`` mask: query ``i`` sees keys ``i - window + 1 .. i``."""
    i = torch.arange(t, device=device)
    d = i[:, None] - i[None, :]
    return torch.where((d >= 0) & (d < window), 0.0, float("-inf"))


@torch.no_grad()
def band_logits(model: "MissionGNN", steps: np.ndarray, gaps: np.ndarray, keys: np.ndarray, times_ns: np.ndarray,
                *, block: int = 120, tokens: int = 16384) -> tuple[np.ndarray, np.ndarray]:
    """Mission and fine logits of every row with its past-only window, in row order.

    One layer: each sequence (same key, by time) is cut into blocks of ``block`` steps, each preceded by the
    ``A - 1`` steps before it, and run band-masked (exactly the per-window result, see the module docstring).
    More layers: one pass per window."""
    from packetclip.reasoning.windows import past_windows

    c = model.config
    n = len(keys)
    out_m = np.zeros((n, len(c.missions)), np.float32)
    out_f = np.zeros((n, max(1, len(c.fine_classes))), np.float32)
    if not n:
        return out_m, out_f
    model.eval()
    if c.layers != 1:
        idx, lengths, _ = past_windows(keys, times_ns, c.window)
        starts = [(idx[r, :lengths[r]], lengths[r] - 1, np.array([r])) for r in range(n)]
    else:
        import pandas as pd

        codes = pd.factorize(pd.Series(keys, dtype=object))[0]
        order = np.lexsort((np.arange(n), np.asarray(times_ns, np.int64), codes))
        sc = codes[order]
        bounds = np.flatnonzero(np.r_[True, sc[1:] != sc[:-1], True])
        starts = []
        for a, b in zip(bounds[:-1], bounds[1:]):
            for s in range(a, b, block):
                e = min(b, s + block)
                p = max(a, s - c.window + 1)
                starts.append((order[p:e], s - p, order[s:e]))
    starts.sort(key=lambda item: len(item[0]))
    i = 0
    while i < len(starts):
        t = len(starts[i][0])
        j = i + 1
        while j < len(starts) and (j - i + 1) * len(starts[j][0]) <= tokens:
            j += 1
        group = starts[i:j]
        t = max(len(g[0]) for g in group)
        idx = np.full((len(group), t), -1, np.int64)
        for k, (rows, _, _) in enumerate(group):
            idx[k, :len(rows)] = rows
        st = torch.from_numpy(np.where(idx[..., None] >= 0, steps[np.maximum(idx, 0)], 0.0).astype(np.float32))
        gp = torch.from_numpy(np.where(idx >= 0, gaps[np.maximum(idx, 0)], 0.0).astype(np.float32))
        m, f = model.temporal(st, gp)
        m, f = m.numpy(), f.numpy()
        for k, (rows, first, targets) in enumerate(group):
            if c.layers != 1:
                out_m[targets], out_f[targets] = m[k, first], f[k, first]
            else:
                out_m[targets], out_f[targets] = m[k, first:len(rows)], f[k, first:len(rows)]
        i = j
    return out_m, out_f


class MissionBranch(nn.Module):
    """Message passing over one mission graph (dense, batched)."""

    def __init__(self, graph: dict, embed_dim: int, node_dim: int, gen: torch.Generator):
        super().__init__()
        self.n_levels = len(graph["words"])
        sizes = [len(w) for w in graph["words"]]
        for lv, n in enumerate(sizes):
            self.register_buffer(f"vec{lv}", torch.zeros(n, embed_dim))
        for lv in range(1, self.n_levels):
            self.register_buffer(f"adj{lv}", torch.as_tensor(np.asarray(graph["adjacency"][lv - 1], np.float32)))
        d, e = node_dim, embed_dim
        # x * w_n has entries ~1/E: scale so the D weighted cosines start O(1)
        self.p0 = nn.Parameter(torch.randn(d, e, generator=gen) * 0.5 * e ** 0.5)
        self.b0 = nn.Parameter(torch.zeros(d))
        self.q = nn.ParameterList([nn.Parameter(torch.randn(d, d, generator=gen) / d ** 0.5)
                                   for _ in range(1, self.n_levels)])
        self.u = nn.ParameterList([nn.Parameter(torch.randn(d, e, generator=gen) / e ** 0.5)
                                   for _ in range(1, self.n_levels)])
        self.r = nn.Linear(d, d)

    def set_vectors(self, vectors: list[np.ndarray]) -> None:
        for lv, v in enumerate(vectors):
            getattr(self, f"vec{lv}").copy_(torch.as_tensor(np.asarray(v, np.float32)))

    def forward(self, x: torch.Tensor, keep: list | None = None) -> torch.Tensor:
        """``x [M, E]`` -> embedding node ``[M, D]``; node states are appended to ``keep`` when given."""
        w0 = self.vec0                                            # [N0, E]
        k0 = (w0[:, None, :] * self.p0[None]).reshape(-1, w0.shape[1])   # [N0*D, E]
        h = F.gelu((x @ k0.T).reshape(x.shape[0], w0.shape[0], -1) + self.b0)   # [M, N0, D]
        if keep is not None:
            keep.append(h)
        for lv in range(1, self.n_levels):
            adj = getattr(self, f"adj{lv}")                       # [N_l, N_{l-1}]
            bias = getattr(self, f"vec{lv}") @ self.u[lv - 1].T     # [N_l, D]
            h = F.gelu(torch.einsum("ij,mjd->mid", adj, h) @ self.q[lv - 1].T + bias)
            if keep is not None:
                keep.append(h)
        return F.gelu(self.r(h.mean(1)))


class MissionGNN(nn.Module):
    """Branches per mission graph + causal temporal transformer + heads; see the module docstring."""

    def __init__(self, config: ReasoningConfig):
        super().__init__()
        self.config = c = config
        if not c.graphs:
            raise PacketClipError("the reasoning model needs at least one mission graph")
        from packetclip.encoders.base import local_seed

        gen = torch.Generator().manual_seed(int(c.seed))
        step_dim = c.node_dim * len(c.graphs) + 1
        with local_seed(c.seed):     # torch's own layers draw their init from the global RNG: seed it locally
            self.branches = nn.ModuleList([MissionBranch(g, c.embed_dim, c.node_dim, gen) for g in c.graphs])
            self.inp = nn.Linear(step_dim, c.d_model)
            layer = nn.TransformerEncoderLayer(c.d_model, c.heads, c.ff_dim, c.dropout, batch_first=True,
                                               activation="gelu")
            self.temporal_encoder = nn.TransformerEncoder(layer, c.layers, enable_nested_tensor=False)
            self.head = nn.Sequential(nn.Linear(c.d_model, 64), nn.GELU(), nn.Linear(64, len(c.missions)))
            self.fine_head = nn.Linear(c.d_model, max(1, len(c.fine_classes)))
        self.eval()

    def set_graph_vectors(self, vectors: list[list[np.ndarray]]) -> None:
        with torch.no_grad():
            for branch, v in zip(self.branches, vectors):
                branch.set_vectors(v)

    def step_features(self, x: torch.Tensor, keep: list | None = None) -> torch.Tensor:
        """Aligned traffic vectors ``[M, E]`` -> concatenated embedding nodes ``[M, D * missions]``."""
        return torch.cat([b(x, keep) for b in self.branches], dim=-1)

    def temporal(self, steps: torch.Tensor, gaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Sequences ``steps [B, T, S]`` (right-padded; step ``t`` sees ``t - A + 1 .. t``) and ``gaps [B, T]``
        (log1p seconds since the previous step of the same sequence) -> mission and fine logits ``[B, T, ...]``."""
        t = steps.shape[1]
        z = self.inp(torch.cat([steps, gaps[..., None]], -1))
        z = self.temporal_encoder(z, mask=band_mask(t, self.config.window, z.device))
        return self.head(z), self.fine_head(z)

    # ---- persistence --------------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path) -> Path:
        from packetclip.encoders._weights import save_module

        return save_module(self, Path(directory), self.config.to_dict(), {"model_type": MODEL_TYPE})

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> "MissionGNN":
        """Strict load: missing/extra tensors or wrong shapes are one ``CheckpointError`` line."""
        from packetclip.encoders._weights import load_module, read_config

        directory = Path(directory)
        model = cls(ReasoningConfig.from_dict(read_config(directory), path=str(directory / CONFIG_NAME)))
        load_module(model, directory)
        model.eval()
        return model

    def trainable_parameters(self) -> int:
        return int(sum(p.numel() for p in self.parameters() if p.requires_grad))
