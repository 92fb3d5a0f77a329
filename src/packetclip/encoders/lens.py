"""Lens-style traffic foundation model: a T5 encoder-decoder over the bytes of masked packet views.

Input. One packet, or the first ``k`` packets of a flow, each as its masked view (bytes from the IP
header on, cut at the packet's end), followed by a separator. Bytes are grouped into *patches* of
``patch_size`` (default 4: one 32-bit header word, the alignment of IPv4/IPv6/TCP/UDP headers); a patch's
embedding is the sum of per-slot byte embeddings, plus a learned embedding of the patch's offset in its
packet and of the packet's index in the input. T5's relative attention bias sits on top of that. Slots
can also hold "absent" (past the packet's end) or a sentinel (masked for span prediction / generation),
so corruption is exact at byte level while the encoder runs on a sequence 4x shorter than the bytes.

Tokenisation: 4-byte patches by default, for cost, measured (``tokenisation="bigram"`` and ``patch_size=1``
remain available). ``benchmarks/encoder_quality.py --compare-tokenisation --pretrain-minutes 2 --threads 1``
(tiny, k=4, same data and probe, one CPU thread each) gave:

==============================  ==============  ===========  ==========  ===================
variant                         steps in 2 min  ndpi probe   lab probe   embed, packets/s
==============================  ==============  ===========  ==========  ===================
byte, 4-byte patches (default)  252             0.142        0.722       1,518
byte, 1 byte per position       50              0.152        0.770       386
ET-BERT bigrams (stride 1)      50              0.135        0.781       398
==============================  ==============  ===========  ==========  ===================

(macro-F1). Patches embed 3.8x faster than bigrams and train 7x more steps in the same time, which is
what keeps ``encoder_speed``'s ratio against a BERT-base ET-BERT far above 100 and makes CPU pre-training
possible at all. On probe quality this budget does not separate them: bigrams scored higher on the lab
task and lower on ndpi, within the +-3-point spread we see between pre-training seeds, and a 2-minute
model is close to its random initialisation anyway. Bigrams also carry a structural flaw for span
prediction: a masked bigram's neighbours overlap it, so a span's edge bytes stay visible (field masking
here widens bigram runs by one unit for that reason) and the 65,536-way unit vocabulary makes the
decoder's output layer 200x larger than bytes'.

Decoder. Targets are byte tokens (or bigram tokens) with T5 sentinels: ``<s_0> b b b <s_1> b ... </s>``.

Pre-training heads (used by :mod:`packetclip.encoders.pretrain`): per-packet order classification
(Packet Order Prediction) and a binary same-flow head over two separately pooled segments (Homologous
Traffic Prediction; encoding the segments apart makes the pooled embedding itself carry what identifies a
flow, which is what downstream probes and alignment read).

``LensModel.embed_flows`` is what every later stage uses (the :class:`~packetclip.encoders.base.TrafficEncoder`
contract): each flow's first ``k_packets`` views through :meth:`LensModel.embed` -- batched,
``torch.inference_mode``, pooled encoder states, identical inputs embedded once (a flood repeats the same
masked view thousands of times) -- and, for a workspace, through its embedding store. Pooling
(``LensConfig.pooling``): ``packets`` (default) concatenates each packet's mean-pooled states in packet order
(``k * d_model`` values: the states Packet Order Prediction trains); ``mean`` pools all positions
(``d_model``). The model runs on whatever device it was moved to (``from_pretrained(path, device="cuda")``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from packetclip.encoders import _weights
from packetclip.encoders.base import EncoderConfig, TrafficEncoder, local_seed, select_rows
from packetclip.encoders.data import packet_lengths
from packetclip.errors import CheckpointError, PacketClipError
from packetclip.util.progress import Progress

MODEL_TYPE = "packetclip-lens"

#: Architecture presets. ``tiny`` is for CPU pre-training within minutes; ``base`` is T5-base shaped.
SIZES: dict[str, dict[str, int]] = {
    "tiny": {"d_model": 128, "num_layers": 2, "num_decoder_layers": 2, "num_heads": 4, "d_ff": 512},
    "small": {"d_model": 256, "num_layers": 4, "num_decoder_layers": 4, "num_heads": 4, "d_ff": 1024},
    "base": {"d_model": 768, "num_layers": 12, "num_decoder_layers": 12, "num_heads": 12, "d_ff": 2048},
}
TOKENISATIONS = ("byte", "bigram")
POOLINGS = ("packets", "mean")

# encoder position kinds
KIND_PAD, KIND_PATCH, KIND_SEP = 0, 1, 2
# decoder vocabulary: pad (also the decoder start), end of sequence, sentinels, then units
DEC_PAD, DEC_EOS, DEC_SENTINEL0 = 0, 1, 2


@dataclass
class LensConfig(EncoderConfig):
    """Architecture and tokenisation (saved as ``config.json``). Unset sizes come from the ``size`` preset."""

    model_type = MODEL_TYPE

    size: str = "tiny"
    tokenisation: str = "byte"
    patch_size: int = 4
    view_bytes: int = 128
    k_packets: int = 4
    n_sentinels: int = 64
    d_model: int | None = None
    num_layers: int | None = None
    num_decoder_layers: int | None = None
    num_heads: int | None = None
    d_ff: int | None = None
    dropout: float = 0.0
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    pooling: str = "packets"

    def __post_init__(self) -> None:
        if self.size not in SIZES:
            raise PacketClipError(f"size must be one of {', '.join(SIZES)}, not {self.size!r}")
        for name, value in SIZES[self.size].items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        if self.tokenisation not in TOKENISATIONS:
            raise PacketClipError(f"tokenisation must be one of {', '.join(TOKENISATIONS)}, not {self.tokenisation!r}")
        if self.pooling not in POOLINGS:
            raise PacketClipError(f"pooling must be one of {', '.join(POOLINGS)}, not {self.pooling!r}")
        ints = ("patch_size", "view_bytes", "k_packets", "n_sentinels", "d_model", "num_layers",
                "num_decoder_layers", "num_heads", "d_ff", "relative_attention_num_buckets",
                "relative_attention_max_distance")
        for name in ints:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise PacketClipError(f"{name} must be a positive integer, got {value!r}")
        if self.d_model % self.num_heads:
            raise PacketClipError(f"d_model ({self.d_model}) must be divisible by num_heads ({self.num_heads})")
        if self.view_bytes < 2:
            raise PacketClipError("view_bytes must be at least 2")
        if not (0.0 <= float(self.dropout) < 1.0):
            raise PacketClipError(f"dropout must be in [0, 1), got {self.dropout!r}")

    # --- derived sizes ---------------------------------------------------------------------------------
    @property
    def unit_vocab(self) -> int:
        """Distinct values of one unit: a byte or a stride-1 bigram."""
        return 256 if self.tokenisation == "byte" else 65536

    @property
    def units_per_packet(self) -> int:
        return self.view_bytes if self.tokenisation == "byte" else self.view_bytes - 1

    @property
    def patches_per_packet(self) -> int:
        return math.ceil(self.units_per_packet / self.patch_size)

    @property
    def slot_absent(self) -> int:
        return self.unit_vocab

    @property
    def slot_sentinel0(self) -> int:
        return self.unit_vocab + 1

    @property
    def slot_vocab(self) -> int:
        return self.unit_vocab + 1 + self.n_sentinels

    @property
    def dec_unit0(self) -> int:
        return DEC_SENTINEL0 + self.n_sentinels

    @property
    def decoder_vocab(self) -> int:
        return self.dec_unit0 + self.unit_vocab

    @property
    def embed_dim(self) -> int:
        """Width of :meth:`LensModel.embed`'s output: ``k_packets * d_model`` (``packets``) or ``d_model``."""
        return self.k_packets * self.d_model if self.pooling == "packets" else self.d_model

    @property
    def max_packets(self) -> int:
        """Packets one input may hold (a flow's first ``k``)."""
        return self.k_packets

    @property
    def htp_segment(self) -> int:
        """Packets per segment in homologous traffic prediction."""
        return max(1, self.k_packets // 2)


class LensModel(nn.Module, TrafficEncoder):
    """T5 encoder-decoder over patched packet bytes, with the pre-training heads; see the module docstring.

    ``seed`` (optional) makes the random initialisation reproducible without touching the global torch RNG.
    """

    model_type = MODEL_TYPE

    def __init__(self, config: LensConfig, *, seed: int | None = None):
        if seed is not None:
            with local_seed(seed):
                self.__init__(config)
            return
        super().__init__()
        from transformers import T5Config, T5ForConditionalGeneration

        self.config = config
        d = config.d_model
        t5 = T5Config(
            vocab_size=config.decoder_vocab, d_model=d, d_kv=d // config.num_heads, d_ff=config.d_ff,
            num_layers=config.num_layers, num_decoder_layers=config.num_decoder_layers, num_heads=config.num_heads,
            relative_attention_num_buckets=config.relative_attention_num_buckets,
            relative_attention_max_distance=config.relative_attention_max_distance,
            dropout_rate=config.dropout, feed_forward_proj="gated-gelu", tie_word_embeddings=True,
            decoder_start_token_id=DEC_PAD, pad_token_id=DEC_PAD, eos_token_id=DEC_EOS,
        )
        self.t5 = T5ForConditionalGeneration(t5)
        self.slot_embed = nn.Embedding(config.patch_size * config.slot_vocab, d)
        self.kind_embed = nn.Embedding(3, d)
        self.pos_embed = nn.Embedding(config.patches_per_packet + 1, d)
        self.packet_embed = nn.Embedding(config.max_packets, d)
        self.pop_head = nn.Linear(d, config.k_packets)
        self.htp_head = nn.Linear(2 * d, 1)
        self.htp_proj = nn.Linear(d, d)
        with torch.no_grad():
            nn.init.normal_(self.slot_embed.weight, std=1.0 / math.sqrt(config.patch_size))
            for emb in (self.kind_embed, self.pos_embed, self.packet_embed):
                nn.init.normal_(emb.weight, std=0.5)
        self.register_buffer("_slot_offsets", torch.arange(config.patch_size) * config.slot_vocab, persistent=False)
        self.last_embed_stats: dict[str, int] = {}
        self.eval()

    # --- tokenisation (numpy) --------------------------------------------------------------------------
    def units(self, views: np.ndarray, lengths: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Units of views ``[..., L]`` (bytes, or bigrams) and how many of them are real packet content."""
        views = np.asarray(views)
        flat = views.reshape(-1, views.shape[-1])
        if lengths is None:
            lengths = packet_lengths(flat).reshape(views.shape[:-1])
        lengths = np.asarray(lengths, np.int64)
        if self.config.tokenisation == "byte":
            return views.astype(np.int64), lengths
        v = views.astype(np.int64)
        return (v[..., :-1] << 8) | v[..., 1:], np.maximum(lengths - 1, 1)

    def tokenise(self, units: np.ndarray, n_units: np.ndarray, present: np.ndarray | None = None) -> dict:
        """Encoder tensors for ``units [n, m, U]`` (slot values) with ``n_units [n, m]`` real units per packet.

        ``present [n, m]`` says which packets exist (default: all); absent ones take no positions. Every
        packet becomes ``ceil(n_units / patch_size)`` patch positions plus a separator, packets in order.
        """
        cfg = self.config
        P = cfg.patch_size
        units = np.asarray(units, np.int64)
        n, m, U = units.shape
        if U > cfg.units_per_packet:
            units = units[:, :, : cfg.units_per_packet]
            U = cfg.units_per_packet
        n_units = np.minimum(np.asarray(n_units, np.int64).reshape(n, m), U)
        if present is None:
            present = np.ones((n, m), bool)
        n_units = np.where(present, np.maximum(n_units, 1), 0)
        Tp = math.ceil(U / P)
        padded = np.full((n, m, Tp * P), cfg.slot_absent, np.int64)
        padded[:, :, :U] = units
        padded[np.arange(Tp * P)[None, None, :] >= n_units[:, :, None]] = cfg.slot_absent
        slots = np.full((n, m, Tp + 1, P), cfg.slot_absent, np.int64)
        slots[:, :, :Tp] = padded.reshape(n, m, Tp, P)
        n_patch = -(-n_units // P)
        t = np.arange(Tp + 1)[None, None, :]
        kind = np.where(t < n_patch[:, :, None], KIND_PATCH, KIND_PAD)
        kind[:, :, Tp] = np.where(present, KIND_SEP, KIND_PAD)
        pos = np.broadcast_to(np.minimum(t, cfg.patches_per_packet), (n, m, Tp + 1)).copy()
        pos[:, :, Tp] = cfg.patches_per_packet
        pkt = np.broadcast_to(np.arange(m)[None, :, None], (n, m, Tp + 1))
        kind, pos, pkt = kind.reshape(n, -1), pos.reshape(n, -1), pkt.reshape(n, -1)
        slots = slots.reshape(n, -1, P)
        order = np.argsort(kind == KIND_PAD, axis=1, kind="stable")
        length = int((kind != KIND_PAD).sum(axis=1).max()) if n else 0
        order = order[:, :max(length, 1)]
        take = lambda a: np.take_along_axis(a, order, axis=1)  # noqa: E731
        return {
            "slots": torch.from_numpy(np.take_along_axis(slots, order[:, :, None], axis=1)),
            "kind": torch.from_numpy(take(kind)),
            "pos": torch.from_numpy(take(pos)),
            "packet": torch.from_numpy(np.ascontiguousarray(take(pkt))),
        }

    # --- forward pieces --------------------------------------------------------------------------------
    # --- contract -----------------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.slot_embed.weight.device

    @property
    def embed_dim(self) -> int:
        return self.config.embed_dim

    @property
    def fingerprint(self) -> str:
        """Stable hash of config and weights: the embedding-store key of this model."""
        return self._fingerprint_of(self, self.config.to_dict(), MODEL_TYPE)

    def store_settings(self) -> dict:
        return {"first_k": self.config.k_packets, "mode": "sequence"}

    def to_device(self, enc: dict) -> dict:
        """Encoder inputs moved to the model's device (tokenise builds them on the CPU)."""
        device = self.device
        return {k: v.to(device, non_blocking=True) for k, v in enc.items()}

    def input_embeddings(self, enc: dict) -> torch.Tensor:
        enc = self.to_device(enc)
        kind = enc["kind"]
        patch = self.slot_embed(enc["slots"] + self._slot_offsets).sum(dim=-2)
        patch = patch * (kind == KIND_PATCH).unsqueeze(-1)
        return patch + self.kind_embed(kind) + self.pos_embed(enc["pos"]) + self.packet_embed(enc["packet"])

    def encoder_states(self, enc: dict) -> torch.Tensor:
        """Final encoder states ``[B, T, d]`` (on the model's device)."""
        enc = self.to_device(enc)
        mask = (enc["kind"] != KIND_PAD).long()
        out = self.t5.encoder(inputs_embeds=self.input_embeddings(enc), attention_mask=mask)
        return out.last_hidden_state

    @staticmethod
    def pool(hidden: torch.Tensor, enc: dict) -> torch.Tensor:
        """Mean over the non-padding positions."""
        mask = (enc["kind"].to(hidden.device) != KIND_PAD).unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)

    def pool_embedding(self, hidden: torch.Tensor, enc: dict) -> torch.Tensor:
        """The embedding ``[B, embed_dim]`` of encoder states: see ``LensConfig.pooling``."""
        if self.config.pooling == "mean":
            return self.pool(hidden, enc)
        return self.pool_packets(hidden, enc, self.config.k_packets).reshape(hidden.shape[0], -1)

    def pool_packets(self, hidden: torch.Tensor, enc: dict, n_packets: int) -> torch.Tensor:
        """Mean of each packet's positions: ``[B, n_packets, d]``."""
        packet, kind = enc["packet"].to(hidden.device), enc["kind"].to(hidden.device)
        onehot = torch.nn.functional.one_hot(packet, self.config.max_packets)[..., :n_packets]
        onehot = onehot * (kind != KIND_PAD).unsqueeze(-1)
        onehot = onehot.to(hidden.dtype)
        return onehot.transpose(1, 2) @ hidden / onehot.sum(1).unsqueeze(-1).clamp_min(1.0)

    def htp_logit(self, pooled_a: torch.Tensor, pooled_b: torch.Tensor) -> torch.Tensor:
        """Same-flow logit of two separately encoded, pooled segments (symmetric in a and b)."""
        return self.htp_head(torch.cat([(pooled_a - pooled_b).abs(), pooled_a * pooled_b], dim=-1)).squeeze(-1)

    def span_loss(self, enc: dict, labels: torch.Tensor, hidden: torch.Tensor | None = None) -> torch.Tensor:
        """Decoder cross-entropy on sentinel-delimited targets (``-100`` = ignored)."""
        hidden = self.encoder_states(enc) if hidden is None else hidden
        mask = (enc["kind"].to(hidden.device) != KIND_PAD).long()
        return self.t5(encoder_outputs=(hidden,), attention_mask=mask, labels=labels.to(hidden.device)).loss

    @torch.inference_mode()
    def greedy_decode(self, enc: dict, steps: int) -> torch.Tensor:
        """Greedy decoder output ``[B, steps]`` (no start token, on the model's device) for inputs ``enc``."""
        hidden = self.encoder_states(enc)
        mask = (enc["kind"].to(hidden.device) != KIND_PAD).long()
        dec = torch.full((hidden.shape[0], 1), DEC_PAD, dtype=torch.long, device=hidden.device)
        for _ in range(steps):
            logits = self.t5(encoder_outputs=(hidden,), attention_mask=mask, decoder_input_ids=dec).logits
            dec = torch.cat([dec, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
        return dec[:, 1:]

    # --- embeddings --------------------------------------------------------------------------------------
    @torch.inference_mode()
    def embed(self, views: np.ndarray, *, batch_size: int = 512, dedup: bool = True,
              progress: bool = False) -> np.ndarray:
        """Embeddings ``float32 [n, embed_dim]`` of packets ``uint8 [n, L]`` or flows ``uint8 [n, k, L]``.

        A flow input is its first packets' views; all-zero rows are absent packets (see
        :func:`packetclip.encoders.data.first_k_packets`). With ``pooling="packets"`` (default) the
        embedding is each packet's mean-pooled encoder states, concatenated in packet order (zeros for
        absent packets; a single packet fills the first ``d_model`` values); ``"mean"`` pools all positions. Identical inputs are embedded once and the result
        is scattered back; inputs are length-sorted so batches carry little padding.
        ``last_embed_stats`` records how many rows went through the network.
        """
        arr = np.asarray(views)
        if arr.dtype != np.uint8 or arr.ndim not in (2, 3):
            raise PacketClipError(f"embed() needs uint8 views [n, L] or [n, k, L], got {arr.dtype} {arr.shape}")
        if arr.shape[-1] < 2:
            raise PacketClipError("views must have at least 2 bytes")
        if arr.ndim == 2:
            arr = arr[:, None, :]
        if arr.shape[1] > self.config.max_packets:
            raise PacketClipError(f"at most {self.config.max_packets} packets per input, got {arr.shape[1]}")
        n = arr.shape[0]
        out = np.zeros((n, self.config.embed_dim), np.float32)
        if n == 0:
            self.last_embed_stats = {"rows": 0, "forward_rows": 0}
            return out
        flat = np.ascontiguousarray(arr.reshape(n, -1))
        if dedup:
            _, first, inverse = np.unique(flat.view(np.dtype((np.void, flat.shape[1]))).ravel(),
                                          return_index=True, return_inverse=True)
            rows = arr[first]
        else:
            rows, inverse = arr, np.arange(n)
        present = rows.any(axis=2)
        present[:, 0] = True
        units, n_units = self.units(rows)
        n_units = np.where(present, n_units, 0)
        cost = -(-n_units // self.config.patch_size).sum(axis=1)
        order = np.argsort(cost, kind="stable")
        result = np.zeros((rows.shape[0], self.config.embed_dim), np.float32)
        was_training = self.training
        self.eval()
        try:
            with Progress("embed", len(order), enabled=progress) as bar:
                for s in range(0, len(order), batch_size):
                    idx = order[s: s + batch_size]
                    enc = self.to_device(self.tokenise(units[idx], n_units[idx], present[idx]))
                    result[idx] = self.pool_embedding(self.encoder_states(enc), enc).float().cpu().numpy()
                    bar.advance(len(idx))
        finally:
            self.train(was_training)
        self.last_embed_stats = {"rows": n, "forward_rows": int(rows.shape[0])}
        out[:] = result[inverse.ravel()]
        return out

    def embed_views_by_flow(self, views: np.ndarray, flow_id: np.ndarray, *, mode: str = "sequence",
                            k: int | None = None, batch_size: int = 512,
                            progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """``(sorted flow ids, embeddings)`` of every flow in packet rows ``views`` / ``flow_id`` (capture order),
        from each flow's first ``k`` packets.

        ``mode="sequence"`` feeds the k packets as one input (what :meth:`embed_flows` does); ``"mean"``
        averages their per-packet embeddings.
        """
        from packetclip.encoders.data import first_k_packets, fit_width

        k = self.config.k_packets if k is None else int(k)
        views = fit_width(np.asarray(views), self.config.view_bytes)
        ids, firsts, taken = first_k_packets(views, flow_id, k)
        if mode == "sequence":
            return ids, self.embed(firsts, batch_size=batch_size, progress=progress)
        if mode != "mean":
            raise PacketClipError(f"mode must be 'sequence' or 'mean', not {mode!r}")
        per_packet = self.embed(firsts.reshape(-1, firsts.shape[-1]), batch_size=batch_size, progress=progress)
        per_packet = per_packet.reshape(len(ids), k, -1)
        weight = (np.arange(k)[None, :] < taken[:, None]).astype(np.float32)[..., None]
        return ids, (per_packet * weight).sum(1) / weight.sum(1)

    def _embed_workspace_flows(self, workspace, flow_ids: np.ndarray, *, batch_size: int = 512,
                               progress: bool = False) -> np.ndarray:
        packets = workspace.packet_views(flow_ids, first_k=self.config.k_packets)
        return self._embed_frames(packets, flow_ids, batch_size=batch_size, progress=progress,
                                  where=workspace.root)

    def _embed_frames(self, frames, flow_ids=None, *, batch_size=None, progress=False, where=None) -> np.ndarray:
        """``frames``: a :class:`~packetclip.traffic.workspace.PacketViews` or a ``(views, flow_id)`` pair."""
        views, flow_id = (frames.views, frames.flow_id) if hasattr(frames, "views") else frames
        ids, emb = self.embed_views_by_flow(views, np.asarray(flow_id, np.int64), batch_size=batch_size or 512,
                                            progress=progress)
        if flow_ids is None:
            return emb
        return select_rows(ids, emb, np.asarray(flow_ids, np.int64), "packets", path=where)

    def embed_workspace(self, workspace, *, flow_ids: Sequence[int] | np.ndarray | None = None,
                        **kwargs) -> tuple[np.ndarray, np.ndarray]:
        """Deprecated: ``(flow ids, embed_flows(workspace, flow_ids))``; call :meth:`embed_flows` instead."""
        from packetclip.traffic.workspace import Workspace

        ws = workspace if isinstance(workspace, Workspace) else Workspace.open(workspace)
        ids = ws.flow_ids() if flow_ids is None else np.asarray(flow_ids, np.int64)
        return ids, self.embed_flows(ws, ids, **kwargs)

    # --- persistence -------------------------------------------------------------------------------------
    def _canonical_state(self) -> dict[str, torch.Tensor]:
        """State dict without tied aliases (T5 shares one embedding between encoder, decoder and output)."""
        from packetclip.encoders.base import _unique_state

        return _unique_state(self)

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``config.json`` and ``model.safetensors`` (no pickle) into ``directory``."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.config.save(directory)
        state = {k: v.detach().cpu().contiguous().clone() for k, v in self._canonical_state().items()}
        save_file(state, str(directory / _weights.WEIGHTS_NAME), metadata={"format": "pt", "model_type": MODEL_TYPE})
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path, *, device: str | torch.device = "cpu") -> "LensModel":
        """Load a model saved by :meth:`save_pretrained` onto ``device``; any mismatch is one ``CheckpointError``
        line. ``directory`` may also name a shipped encoder (``"lens-tiny"``, the default packet encoder; see
        :mod:`packetclip.encoders.pretrained`); a local folder of that name wins."""
        from packetclip.encoders.pretrained import resolve_encoder, shipped_names

        directory = resolve_encoder(directory)
        if not directory.is_dir():
            raise CheckpointError(f"not a saved model folder (nor a shipped encoder name: {', '.join(shipped_names())})",
                                  path=str(directory))
        config = LensConfig.load(directory)
        model = cls(config)
        path = directory / _weights.WEIGHTS_NAME
        tensors = _weights.read_safetensors(path)
        expected = {k: tuple(v.shape) for k, v in model._canonical_state().items()}
        _weights.check_tensors(expected, tensors, path)
        result = model.load_state_dict(tensors, strict=False)
        aliases = set(model.state_dict()) - set(expected)
        if set(result.missing_keys) - aliases or result.unexpected_keys:
            raise CheckpointError("checkpoint does not match the model", path=str(path))
        model.eval()
        return model.to(_device(device))

    def num_parameters(self) -> int:
        return sum(t.numel() for t in self._canonical_state().values())


def _device(device) -> torch.device:
    """A torch device from a name; asking for CUDA on a machine without it is one clear line."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise PacketClipError(f"unknown device {device!r}: {err}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise PacketClipError(f"device {device!r} asked for, but torch sees no CUDA GPU")
    return dev
