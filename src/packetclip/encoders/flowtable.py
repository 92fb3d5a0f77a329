"""Flow-table encoder: a small network over CICFlowMeter columns, pre-trained without labels.

Datasets such as CIC-IDS2017 and the ACI-IoT-2023 CSV ship flow rows, not packets. This encoder offers the
same contract as the packet encoders (:class:`~packetclip.encoders.base.TrafficEncoder`: ``embed_flows``,
``fingerprint``, ``device``) so every later stage (alignment, reasoning, detection) runs on either modality.

Pipeline: per-feature normalisation learned at fit time and stored in the model's buffers (signed log1p,
then median / IQR scaling with a soft clip; NaN and +-inf become the median), then either an
FT-Transformer-like encoder (one token per feature + [CLS]) or an MLP, pre-trained by masked feature
modelling (hide a random subset of features, reconstruct them) plus an optional contrastive term between
two independent maskings of the same row.

Feature set: every numeric CICFlowMeter column except identifiers and labels (``id``, ``Flow ID``, IPs,
ports, ``Timestamp``, ``Label``, ``Attempted Category``). ``Dst Port`` is left out by default, for the
same reason packet views mask ports: a port is a shortcut that identifies the service (22 = SSH-Patator,
21 = FTP-Patator in CIC-IDS2017) rather than the behaviour, and it does not transfer between networks.
``FlowTableConfig(include_dst_port=True)`` adds it back for ablations.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from packetclip.encoders import _weights
from packetclip.encoders.base import EncoderConfig, TrafficEncoder, local_seed, select_rows
from packetclip.errors import CheckpointError, DatasetFormatError, PacketClipError
from packetclip.util.progress import Progress

MODEL_TYPE = "packetclip-flowtable"

#: The numeric CICFlowMeter columns (names as in CIC-IDS2017 / our ingest), identifiers and labels excluded.
CICFLOW_FEATURES: tuple[str, ...] = (
    "Protocol", "Flow Duration", "Total Fwd Packet", "Total Bwd packets", "Total Length of Fwd Packet",
    "Total Length of Bwd Packet", "Fwd Packet Length Max", "Fwd Packet Length Min", "Fwd Packet Length Mean",
    "Fwd Packet Length Std", "Bwd Packet Length Max", "Bwd Packet Length Min", "Bwd Packet Length Mean",
    "Bwd Packet Length Std", "Flow Bytes/s", "Flow Packets/s", "Flow IAT Mean", "Flow IAT Std", "Flow IAT Max",
    "Flow IAT Min", "Fwd IAT Total", "Fwd IAT Mean", "Fwd IAT Std", "Fwd IAT Max", "Fwd IAT Min",
    "Bwd IAT Total", "Bwd IAT Mean", "Bwd IAT Std", "Bwd IAT Max", "Bwd IAT Min", "Fwd PSH Flags",
    "Bwd PSH Flags", "Fwd URG Flags", "Bwd URG Flags", "Fwd RST Flags", "Bwd RST Flags", "Fwd Header Length",
    "Bwd Header Length", "Fwd Packets/s", "Bwd Packets/s", "Packet Length Min", "Packet Length Max",
    "Packet Length Mean", "Packet Length Std", "Packet Length Variance", "FIN Flag Count", "SYN Flag Count",
    "RST Flag Count", "PSH Flag Count", "ACK Flag Count", "URG Flag Count", "CWR Flag Count", "ECE Flag Count",
    "Down/Up Ratio", "Average Packet Size", "Fwd Segment Size Avg", "Bwd Segment Size Avg",
    "Fwd Bytes/Bulk Avg", "Fwd Packet/Bulk Avg", "Fwd Bulk Rate Avg", "Bwd Bytes/Bulk Avg",
    "Bwd Packet/Bulk Avg", "Bwd Bulk Rate Avg", "Subflow Fwd Packets", "Subflow Fwd Bytes",
    "Subflow Bwd Packets", "Subflow Bwd Bytes", "FWD Init Win Bytes", "Bwd Init Win Bytes",
    "Fwd Act Data Pkts", "Fwd Seg Size Min", "Active Mean", "Active Std", "Active Max", "Active Min",
    "Idle Mean", "Idle Std", "Idle Max", "Idle Min", "ICMP Code", "ICMP Type", "Total TCP Flow Time",
)

#: Columns that identify a flow or carry its label; never used as features.
IDENTIFIER_COLUMNS: tuple[str, ...] = (
    "id", "Flow ID", "Src IP", "Src Port", "Dst IP", "Dst Port", "Timestamp", "Label", "Attempted Category",
)


@dataclass
class FlowTableConfig(EncoderConfig):
    """Architecture, normalisation and pre-training hyper-parameters (saved as ``config.json``)."""

    model_type = MODEL_TYPE

    feature_names: list[str] = field(default_factory=lambda: list(CICFLOW_FEATURES))
    include_dst_port: bool = False
    arch: str = "ft_transformer"  # "ft_transformer" | "mlp"
    d_token: int = 32  # FT-Transformer token width
    n_layers: int = 2
    n_heads: int = 4
    ffn_mult: int = 2
    mlp_hidden: int = 256  # MLP width
    embed_dim: int = 128
    dropout: float = 0.1
    soft_clip: float = 5.0
    # masked feature modelling
    mask_ratio: float = 0.3
    contrastive_weight: float = 0.5
    temperature: float = 0.2
    epochs: int = 10
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    max_rows: int | None = None  # subsample the fit table to at most this many rows (None: all)
    seed: int = 0

    def __post_init__(self):
        self.feature_names = list(self.feature_names)
        if self.include_dst_port and "Dst Port" not in self.feature_names:
            self.feature_names = ["Dst Port"] + self.feature_names
        if self.arch not in ("ft_transformer", "mlp"):
            raise PacketClipError(f"unknown flow-table arch {self.arch!r} (use ft_transformer or mlp)")
        if not self.feature_names:
            raise PacketClipError("flow-table encoder needs at least one feature column")
        if len(set(self.feature_names)) != len(self.feature_names):
            raise PacketClipError("duplicate feature names in flow-table config")
        if self.arch == "ft_transformer" and self.d_token % self.n_heads:
            raise PacketClipError("d_token must be divisible by n_heads")
        if not 0.0 < self.mask_ratio < 1.0:
            raise PacketClipError("mask_ratio must be in (0, 1)")

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    @classmethod
    def from_dict(cls, data: dict, *, path=None) -> "FlowTableConfig":
        data = dict(data)
        include = data.pop("include_dst_port", False)
        cfg = super().from_dict(data, path=path)
        cfg.include_dst_port = include  # feature_names already carries Dst Port when it was included
        return cfg


# --------------------------------------------------------------------------------------------- tables

def feature_matrix(df, feature_names: list[str], path=None) -> np.ndarray:
    """The feature columns of a flow table as float64 [n, F]; NaN kept, +-inf kept (the model maps both).

    Column names are matched after stripping whitespace (the original CIC CSVs have leading spaces).
    Missing columns raise :class:`DatasetFormatError` naming them; non-numeric cells become NaN.
    """
    import pandas as pd

    if not isinstance(df, pd.DataFrame):
        raise DatasetFormatError(f"expected a pandas DataFrame of flows, got {type(df).__name__}", path=path)
    stripped = {str(c).strip(): c for c in df.columns}
    missing = [name for name in feature_names if name not in stripped]
    if missing:
        shown = ", ".join(missing[:8]) + (f", ... ({len(missing)} in all)" if len(missing) > 8 else "")
        raise DatasetFormatError(f"flow table lacks feature columns: {shown}", path=path)
    cols = []
    for name in feature_names:
        col = df[stripped[name]]
        if col.dtype.kind not in "biuf":
            col = pd.to_numeric(col.astype(str).str.strip().replace({"Infinity": "inf", "-Infinity": "-inf"}),
                                errors="coerce")
        cols.append(col.to_numpy(dtype=np.float64, na_value=np.nan))
    if not cols:
        return np.zeros((len(df), 0))
    return np.stack(cols, axis=1)


def _signed_log1p(x):
    return torch.sign(x) * torch.log1p(torch.abs(x))


class RobustNormalizer(nn.Module):
    """signed log1p -> (v - median) / (IQR / 1.349) -> soft clip; NaN/inf -> 0 (the median).

    ``center`` and ``scale`` are buffers, so they travel inside ``model.safetensors``.
    """

    def __init__(self, n_features: int, soft_clip: float):
        super().__init__()
        self.soft_clip = float(soft_clip)
        self.register_buffer("center", torch.zeros(n_features))
        self.register_buffer("scale", torch.ones(n_features))

    @torch.no_grad()
    def fit(self, x: np.ndarray) -> "RobustNormalizer":
        v = _signed_log1p(torch.as_tensor(x, dtype=torch.float64))
        v = torch.where(torch.isfinite(v), v, torch.full_like(v, float("nan")))
        arr = v.numpy()
        center = np.nanmedian(arr, axis=0) if arr.shape[0] else np.zeros(arr.shape[1])
        q25, q75 = (np.nanpercentile(arr, [25, 75], axis=0) if arr.shape[0] else (center, center))
        scale = (q75 - q25) / 1.349
        std = np.nanstd(arr, axis=0) if arr.shape[0] else np.zeros(arr.shape[1])
        scale = np.where(scale > 1e-6, scale, std)
        scale = np.where(scale > 1e-6, scale, 1.0)
        center = np.nan_to_num(center, nan=0.0)
        scale = np.nan_to_num(scale, nan=1.0)
        self.center.copy_(torch.as_tensor(center, dtype=torch.float32))
        self.scale.copy_(torch.as_tensor(scale, dtype=torch.float32))
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = _signed_log1p(x.to(torch.float32))
        z = (v - self.center) / self.scale
        z = self.soft_clip * torch.tanh(z / self.soft_clip)
        return torch.where(torch.isfinite(z), z, torch.zeros_like(z))


# --------------------------------------------------------------------------------------------- networks

class _FTTransformer(nn.Module):
    """One token per feature (value * W_i + b_i; masked: mask + b_i), a [CLS] token, pre-norm transformer."""

    def __init__(self, cfg: FlowTableConfig):
        super().__init__()
        n, d = cfg.n_features, cfg.d_token
        self.weight = nn.Parameter(torch.randn(n, d) / math.sqrt(d))
        self.bias = nn.Parameter(torch.randn(n, d) / math.sqrt(d))
        self.mask_token = nn.Parameter(torch.zeros(d))
        self.cls = nn.Parameter(torch.randn(d) / math.sqrt(d))
        layer = nn.TransformerEncoderLayer(
            d, cfg.n_heads, dim_feedforward=d * cfg.ffn_mult, dropout=cfg.dropout, activation="gelu",
            batch_first=True, norm_first=True,
        )
        self.blocks = nn.TransformerEncoder(layer, cfg.n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.to_embedding = nn.Linear(d, cfg.embed_dim)
        self.reconstruct = nn.Linear(d, 1)

    def forward(self, z: torch.Tensor, mask: torch.Tensor | None = None):
        tokens = z.unsqueeze(-1) * self.weight + self.bias
        if mask is not None:
            tokens = torch.where(mask.unsqueeze(-1), self.mask_token + self.bias, tokens)
        cls = self.cls.expand(z.shape[0], 1, -1)
        h = self.norm(self.blocks(torch.cat([cls, tokens], dim=1)))
        embedding = self.to_embedding(h[:, 0])
        recon = self.reconstruct(h[:, 1:]).squeeze(-1)
        return embedding, recon


class _MLP(nn.Module):
    """Denoising-autoencoder MLP: [values with masked ones zeroed, mask indicator] -> embedding -> values."""

    def __init__(self, cfg: FlowTableConfig):
        super().__init__()
        n, h = cfg.n_features, cfg.mlp_hidden
        self.encoder = nn.Sequential(
            nn.Linear(2 * n, h), nn.GELU(), nn.LayerNorm(h), nn.Dropout(cfg.dropout),
            nn.Linear(h, h), nn.GELU(), nn.LayerNorm(h), nn.Linear(h, cfg.embed_dim),
        )
        self.decoder = nn.Sequential(nn.Linear(cfg.embed_dim, h), nn.GELU(), nn.Linear(h, n))

    def forward(self, z: torch.Tensor, mask: torch.Tensor | None = None):
        if mask is None:
            mask = torch.zeros_like(z, dtype=torch.bool)
        m = mask.to(z.dtype)
        embedding = self.encoder(torch.cat([z * (1 - m), m], dim=1))
        return embedding, self.decoder(embedding)


class FlowTableModel(nn.Module):
    """Normaliser + network. ``forward(raw)`` returns the embedding; ``pretrain_loss`` the MFM objective."""

    def __init__(self, cfg: FlowTableConfig):
        super().__init__()
        self.normalizer = RobustNormalizer(cfg.n_features, cfg.soft_clip)
        self.net = _FTTransformer(cfg) if cfg.arch == "ft_transformer" else _MLP(cfg)
        self.head = nn.Sequential(nn.Linear(cfg.embed_dim, cfg.embed_dim), nn.GELU(), nn.Linear(cfg.embed_dim, 64))

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalizer(raw))[0]


def _info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE between two maskings of the same rows (row i of ``a`` matches row i of ``b``): the
    project's one contrastive loss, :func:`packetclip.align.loss.clip_loss`, at a fixed temperature."""
    from packetclip.align.loss import clip_loss

    scale = torch.tensor(-math.log(temperature), device=a.device)
    return clip_loss(F.normalize(a, dim=1), F.normalize(b, dim=1), scale)


# --------------------------------------------------------------------------------------------- encoder

class FlowTableEncoder(TrafficEncoder):
    """Fit / embed / save / load a flow-table encoder (scikit-learn style; learned state ends in ``_``).

    ``fit(df)`` learns the normalisation and pre-trains the network (``config.epochs = 0``: normalisation
    only, i.e. a randomly initialised network). ``embed(df)`` returns float32 [n, embed_dim] for the rows of
    a flow table; ``embed_flows(workspace or df, flow_ids)`` is the encoder contract (by flow id).
    """

    model_type = MODEL_TYPE

    def __init__(self, config: FlowTableConfig | None = None, *, device: str = "cpu"):
        from packetclip.encoders.lens import _device

        self.config = config if config is not None else FlowTableConfig()
        self._device = _device(device)
        self.model_: FlowTableModel | None = None
        self.loss_history_: list[dict] = []

    # ------------------------------------------------------------------ contract
    @property
    def device(self) -> torch.device:
        return self._device

    def to(self, device) -> "FlowTableEncoder":
        from packetclip.encoders.lens import _device

        self._device = _device(device)
        if self.model_ is not None:
            self.model_.to(self._device)
        return self

    @property
    def embed_dim(self) -> int:
        return self.config.embed_dim

    @property
    def fingerprint(self) -> str:
        return self._fingerprint_of(self._require_fitted(), self.config.to_dict(), MODEL_TYPE)

    def _embed_workspace_flows(self, workspace, flow_ids: np.ndarray, *, batch_size: int = 2048,
                               progress: bool = False) -> np.ndarray:
        flows = workspace.flows()
        return self._embed_frames(flows, flow_ids, batch_size=batch_size, where=workspace.root)

    def _embed_frames(self, frames, flow_ids=None, *, batch_size=None, progress=False, where=None) -> np.ndarray:
        """``frames``: a flow table (DataFrame); with ``flow_ids`` it needs a ``flow_id`` column."""
        if flow_ids is None:
            return self.embed(frames, batch_size=batch_size or 2048)
        if "flow_id" not in getattr(frames, "columns", ()):
            raise DatasetFormatError("flow table has no flow_id column to pick flows by", path=where)
        ids = frames["flow_id"].to_numpy(np.int64)
        order = np.argsort(ids, kind="stable")
        wanted = np.asarray(flow_ids, np.int64)
        rows = select_rows(ids[order], order, wanted, "row in the flow table", path=where)
        return self.embed(frames.iloc[rows], batch_size=batch_size or 2048)

    # ------------------------------------------------------------------ training
    def _new_model(self) -> FlowTableModel:
        with local_seed(self.config.seed):
            return FlowTableModel(self.config).to(self.device)

    def _mfm_step(self, model: FlowTableModel, z: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, dict]:
        """Masked feature modelling on one batch (two maskings when the contrastive term is on)."""
        cfg = self.config
        views = 2 if (cfg.contrastive_weight > 0 and z.shape[0] > 1) else 1
        recon_losses, embeddings = [], []
        for _ in range(views):
            mask = (torch.rand(z.shape, generator=gen) < cfg.mask_ratio).to(z.device)
            emb, rec = model.net(z, mask)
            recon_losses.append(F.mse_loss(rec[mask], z[mask]) if mask.any() else rec.sum() * 0.0)
            embeddings.append(emb)
        mfm = torch.stack(recon_losses).mean()
        loss = mfm
        parts = {"mfm": mfm.item()}
        if views == 2:
            con = _info_nce(model.head(embeddings[0]), model.head(embeddings[1]), cfg.temperature)
            loss = loss + cfg.contrastive_weight * con
            parts["contrastive"] = con.item()
        parts["total"] = loss.item()
        return loss, parts

    def fit(self, df, y=None, *, progress: bool = False, on_epoch: Callable[[dict], None] | None = None):
        """Learn normalisation from ``df`` and pre-train with masked feature modelling. ``y`` is ignored."""
        cfg = self.config
        raw = feature_matrix(df, cfg.feature_names)
        if raw.shape[0] < 2:
            raise DatasetFormatError("flow table needs at least 2 rows to fit the encoder")
        rng = np.random.default_rng(cfg.seed)
        if cfg.max_rows is not None and raw.shape[0] > cfg.max_rows:
            raw = raw[np.sort(rng.choice(raw.shape[0], cfg.max_rows, replace=False))]
        model = self._new_model()
        model.normalizer.fit(raw)
        self.model_ = model
        self.loss_history_ = []
        if cfg.epochs <= 0:
            model.eval()
            return self

        with torch.no_grad():
            z_all = model.normalizer(torch.as_tensor(raw, dtype=torch.float32, device=self.device))
        n = z_all.shape[0]
        steps_per_epoch = max(1, math.ceil(n / cfg.batch_size))
        total = steps_per_epoch * cfg.epochs
        warmup = max(1, total // 20)
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / total)))
        )
        gen = torch.Generator().manual_seed(cfg.seed)
        with Progress("pre-training flow-table encoder", total, enabled=progress) as bar, local_seed(cfg.seed):
            model.train()
            for epoch in range(cfg.epochs):
                t0 = time.perf_counter()
                order = torch.randperm(n, generator=gen)
                sums: dict[str, float] = {}
                for step in range(steps_per_epoch):
                    idx = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
                    if idx.numel() < 2:
                        continue
                    loss, parts = self._mfm_step(model, z_all[idx], gen)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                    opt.step()
                    sched.step()
                    for k, v in parts.items():
                        sums[k] = sums.get(k, 0.0) + v
                    bar.advance(1)
                record = {"epoch": epoch + 1, "seconds": time.perf_counter() - t0}
                record.update({k: v / steps_per_epoch for k, v in sums.items()})
                self.loss_history_.append(record)
                if on_epoch is not None:
                    on_epoch(record)
        model.eval()
        return self

    # ------------------------------------------------------------------ inference
    def _require_fitted(self) -> FlowTableModel:
        if self.model_ is None:
            raise PacketClipError("flow-table encoder is not fitted: call fit() or from_pretrained() first")
        return self.model_

    def normalized_features(self, df) -> np.ndarray:
        """The encoder's normalised input, float32 [n, F] (a strong linear baseline on its own)."""
        model = self._require_fitted()
        raw = feature_matrix(df, self.config.feature_names)
        with torch.no_grad():
            return model.normalizer(torch.as_tensor(raw, dtype=torch.float32, device=self.device)).cpu().numpy()

    @torch.no_grad()
    def embed(self, df, batch_size: int = 2048) -> np.ndarray:
        """Embeddings of the flows in ``df``: float32 [n, embed_dim], batched, no grad, eval mode."""
        model = self._require_fitted()
        raw = feature_matrix(df, self.config.feature_names)
        was_training = model.training
        model.eval()
        out = np.zeros((raw.shape[0], self.config.embed_dim), dtype=np.float32)
        try:
            for start in range(0, raw.shape[0], batch_size):
                chunk = torch.as_tensor(raw[start : start + batch_size], dtype=torch.float32, device=self.device)
                out[start : start + chunk.shape[0]] = model(chunk).float().cpu().numpy()
        finally:
            model.train(was_training)
        return out

    transform = embed

    @torch.no_grad()
    def reconstruction_error(self, df, mask_ratio: float | None = None, seed: int = 0) -> float:
        """Mean squared error on masked features (normalised units) over ``df``: the MFM objective on held-out rows."""
        model = self._require_fitted()
        model.eval()
        z = model.normalizer(torch.as_tensor(feature_matrix(df, self.config.feature_names), dtype=torch.float32,
                                             device=self.device))
        gen = torch.Generator().manual_seed(seed)
        mask = (torch.rand(z.shape, generator=gen) < (mask_ratio or self.config.mask_ratio)).to(self.device)
        _, rec = model.net(z, mask)
        return float(F.mse_loss(rec[mask], z[mask]))

    # ------------------------------------------------------------------ persistence
    def save_pretrained(self, directory) -> Path:
        """Write ``config.json`` + ``model.safetensors`` (normalisation statistics included)."""
        model = self._require_fitted()
        return _weights.save_module(model, Path(directory), self.config.to_dict(), {"model_type": MODEL_TYPE})

    @classmethod
    def from_pretrained(cls, directory, *, device: str = "cpu") -> "FlowTableEncoder":
        """Load a saved encoder; any mismatch between config and weights is a one-line CheckpointError."""
        directory = Path(directory)
        raw_cfg = _weights.read_config(directory)
        try:
            config = FlowTableConfig.from_dict(raw_cfg, path=str(directory / _weights.CONFIG_NAME))
        except CheckpointError:
            raise
        except (TypeError, PacketClipError) as err:
            raise CheckpointError(f"invalid flow-table config: {err}", path=str(directory / _weights.CONFIG_NAME)) from None
        enc = cls(config, device=device)
        model = FlowTableModel(config)
        _weights.load_module(model, directory)
        enc.model_ = model.to(enc.device).eval()
        return enc
