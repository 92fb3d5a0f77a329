"""The alignment model: frozen traffic and text encoders (by reference), one linear head each, a temperature.

Encoders are not part of the checkpoint: the config records each one's fingerprint (a hash of its config and
weights) and where it was loaded from, so a saved alignment is small and can refuse embeddings that come from
another encoder (:meth:`AlignModel.check_traffic_encoder`). What is learned lives here:

- ``traffic_proj``: ``[embed_dim, traffic_dim]``, applied to the traffic embedding after standardising it
  with the training set's per-dimension mean and standard deviation (buffers, saved with the weights);
- ``text_proj``: ``[embed_dim, text_dim]``, initialised to the identity (``embed_dim`` = the text width), so
  training starts from the text encoder's own space;
- ``logit_scale``: CLIP's learnable log-temperature, clamped to ``[0, log 100]``.

``heads`` (the paper's Figure 7 ablation): ``none`` trains neither head (the traffic head stays a fixed random
projection, only the temperature learns), ``packet`` trains the traffic head, ``both`` both heads.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from packetclip.errors import CheckpointError, PacketClipError

MODEL_TYPE = "packetclip-align"
CONFIG_NAME = "config.json"
TRAFFIC_KINDS = ("packet", "packet+context", "flow")
HEADS = ("none", "packet", "both")
MAX_LOGIT_SCALE = math.log(100.0)


class EncoderMismatchError(PacketClipError):
    """Embeddings from one encoder were given to an alignment trained on another."""


@dataclass
class AlignConfig:
    """Everything that defines an alignment (saved as ``config.json``); training knobs live in ``TrainSettings``."""

    traffic: str = "packet"
    heads: str = "both"
    traffic_dim: int = 512
    text_dim: int = 384
    embed_dim: int | None = None           # None: the text width (the text head starts as the identity)
    traffic_encoder: dict = field(default_factory=dict)   # {"fingerprint", "model_type", "path", ...}
    text_encoder: dict = field(default_factory=dict)      # {"fingerprint", "model"}
    init_logit_scale: float = math.log(1 / 0.07)
    seed: int = 0
    classes: list = field(default_factory=list)          # class names seen in training (for reports)
    model_type: str = MODEL_TYPE

    def __post_init__(self) -> None:
        if self.traffic not in TRAFFIC_KINDS:
            raise PacketClipError(f"traffic must be one of {', '.join(TRAFFIC_KINDS)}, not {self.traffic!r}")
        if self.heads not in HEADS:
            raise PacketClipError(f"heads must be one of {', '.join(HEADS)}, not {self.heads!r}")
        if self.embed_dim is None:
            self.embed_dim = self.text_dim
        for name in ("traffic_dim", "text_dim", "embed_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise PacketClipError(f"{name} must be a positive integer, got {value!r}")
        if self.heads != "both" and self.embed_dim != self.text_dim:
            raise PacketClipError("with heads none/packet the text side is not projected, so embed_dim must equal "
                                  "text_dim")
        if self.model_type != MODEL_TYPE:
            raise PacketClipError(f"model_type is {self.model_type!r}, expected {MODEL_TYPE!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict, *, path: str | None = None) -> "AlignConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise CheckpointError(f"unknown config keys: {', '.join(unknown)}", path=path)
        if data.get("model_type") != MODEL_TYPE:
            raise CheckpointError(f"not an alignment model (model_type {data.get('model_type')!r})", path=path)
        try:
            return cls(**data)
        except PacketClipError as err:
            raise CheckpointError(f"invalid alignment config: {err.detail}", path=path) from None
        except TypeError as err:
            raise CheckpointError(f"invalid alignment config: {err}", path=path) from None


class AlignModel(nn.Module):
    """Two linear heads and a temperature over frozen encoders' embeddings; see the module docstring."""

    def __init__(self, config: AlignConfig):
        super().__init__()
        self.config = config
        c = config
        gen = torch.Generator().manual_seed(int(c.seed))
        self.register_buffer("traffic_mean", torch.zeros(c.traffic_dim))
        self.register_buffer("traffic_std", torch.ones(c.traffic_dim))
        self.traffic_proj = nn.Linear(c.traffic_dim, c.embed_dim, bias=False)
        self.text_proj = nn.Linear(c.text_dim, c.embed_dim, bias=False)
        with torch.no_grad():
            self.traffic_proj.weight.copy_(torch.randn(c.embed_dim, c.traffic_dim, generator=gen)
                                           / math.sqrt(c.traffic_dim))
            self.text_proj.weight.copy_(torch.eye(c.embed_dim, c.text_dim))
        self.logit_scale = nn.Parameter(torch.tensor(float(c.init_logit_scale)))
        self.traffic_proj.weight.requires_grad_(c.heads in ("packet", "both"))
        self.text_proj.weight.requires_grad_(c.heads == "both")
        self.eval()

    # --- forward ------------------------------------------------------------------------------------
    def fit_standardiser(self, traffic: np.ndarray) -> None:
        """Per-dimension mean / std of the training set's traffic embeddings (constant dims get std 1)."""
        x = torch.as_tensor(np.asarray(traffic, np.float32))
        with torch.no_grad():
            self.traffic_mean.copy_(x.mean(0))
            std = x.std(0, unbiased=False)
            self.traffic_std.copy_(torch.where(std > 1e-6, std, torch.ones_like(std)))

    def standardise(self, x: torch.Tensor) -> torch.Tensor:
        """Traffic embeddings scaled by the training set's mean and std (training does this once, not per step)."""
        return (x - self.traffic_mean) / self.traffic_std

    def project_standardised(self, z: torch.Tensor) -> torch.Tensor:
        """L2-normalised shared-space vectors of already standardised traffic embeddings."""
        return F.normalize(self.traffic_proj(z), dim=-1)

    def encode_traffic(self, x: torch.Tensor) -> torch.Tensor:
        """L2-normalised traffic embeddings in the shared space."""
        return self.project_standardised(self.standardise(x))

    def encode_text(self, t: torch.Tensor) -> torch.Tensor:
        """L2-normalised text embeddings in the shared space."""
        return F.normalize(self.text_proj(t), dim=-1)

    def clamp_(self) -> None:
        """Keep the log-temperature in ``[0, log 100]`` (CLIP's clamp), after every optimiser step."""
        with torch.no_grad():
            self.logit_scale.clamp_(0.0, MAX_LOGIT_SCALE)

    @torch.no_grad()
    def traffic_vectors(self, traffic: np.ndarray, batch_size: int = 8192) -> np.ndarray:
        """numpy in, numpy out: normalised shared-space vectors of traffic embeddings."""
        x = np.asarray(traffic, np.float32)
        out = [self.encode_traffic(torch.from_numpy(x[s:s + batch_size])).numpy()
               for s in range(0, len(x), batch_size)]
        return np.concatenate(out) if out else np.zeros((0, self.config.embed_dim), np.float32)

    @torch.no_grad()
    def text_vectors(self, text: np.ndarray) -> np.ndarray:
        return self.encode_text(torch.from_numpy(np.asarray(text, np.float32))).numpy()

    # --- encoders by reference ------------------------------------------------------------------------
    def check_traffic_encoder(self, fingerprint: str, *, where: str | None = None) -> None:
        """Refuse traffic embeddings from an encoder other than the one this alignment was trained on."""
        expected = self.config.traffic_encoder.get("fingerprint")
        if expected and fingerprint != expected:
            raise EncoderMismatchError(
                f"traffic embeddings come from encoder {fingerprint[:12]} but this alignment was trained on encoder "
                f"{expected[:12]} ({self.config.traffic_encoder.get('path') or 'unknown path'}); embed with that "
                "encoder or train a new alignment", path=where)

    def check_text_encoder(self, fingerprint: str) -> None:
        expected = self.config.text_encoder.get("fingerprint")
        if expected and fingerprint != expected:
            raise EncoderMismatchError(f"text encoder {fingerprint} is not the one this alignment was trained on "
                                       f"({expected})")

    # --- persistence ----------------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path) -> Path:
        """``config.json`` + ``model.safetensors`` (no pickle)."""
        from packetclip.encoders._weights import save_module

        return save_module(self, Path(directory), self.config.to_dict(), {"model_type": MODEL_TYPE})

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> "AlignModel":
        """Load a saved alignment; missing/extra tensors or wrong shapes are one ``CheckpointError`` line."""
        from packetclip.encoders._weights import load_module, read_config

        directory = Path(directory)
        model = cls(AlignConfig.from_dict(read_config(directory), path=str(directory / CONFIG_NAME)))
        load_module(model, directory)
        model.eval()
        return model

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]
