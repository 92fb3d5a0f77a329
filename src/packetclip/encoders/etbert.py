"""ET-BERT compatibility: its tokenizer, its UER-py checkpoint format, and its fine-tuning baseline.

ET-BERT (Lin et al., WWW 2022) is BERT-base (12 layers x 768, 12 heads, 3072 FFN, post-LayerNorm, erf GELU)
trained with UER-py over stride-1 hex bigrams of packet bytes: bytes ``45 00 00 3c`` become the words
``4500 0000 003c``. Its published ``pretrained_model.bin`` is a plain UER-py state dict; this module maps it
onto :class:`transformers.BertModel`:

=========================================================  ==============================================
UER-py key                                                  transformers.BertModel key
=========================================================  ==============================================
embedding.word_embedding.weight                             embeddings.word_embeddings.weight
embedding.position_embedding.weight                         embeddings.position_embeddings.weight
embedding.segment_embedding.weight  (3 rows: pad, A, B)     embeddings.token_type_embeddings.weight (rows 1:)
embedding.layer_norm.gamma / beta                           embeddings.LayerNorm.weight / bias
encoder.transformer.{i}.self_attn.linear_layers.0/1/2       encoder.layer.{i}.attention.self.query/key/value
encoder.transformer.{i}.self_attn.final_linear              encoder.layer.{i}.attention.output.dense
encoder.transformer.{i}.layer_norm_1.gamma / beta           encoder.layer.{i}.attention.output.LayerNorm
encoder.transformer.{i}.feed_forward.linear_1               encoder.layer.{i}.intermediate.dense
encoder.transformer.{i}.feed_forward.linear_2               encoder.layer.{i}.output.dense
encoder.transformer.{i}.layer_norm_2.gamma / beta           encoder.layer.{i}.output.LayerNorm
target.nsp_linear_1 (SOP head) or output_layer_1            pooler.dense (tanh over [CLS], as in UER)
=========================================================  ==============================================

UER segment ids are 1 for real tokens and 0 for padding, and its attention mask is ``seg > 0``; so UER
segment row 0 is only ever added at masked positions and is dropped. UER-py's LayerNorm divides by the
*unbiased* standard deviation plus eps (eps outside the square root); ``uer_layer_norm=True`` (default)
swaps BertModel's LayerNorms for that formula so imported weights give UER's outputs, not merely close
ones. The MLM head (``target.mlm_linear_*``, ``target.layer_norm``) and the SOP classifier
(``target.nsp_linear_2``) are recognised and kept aside in ``extras_``. Any other key, a missing key or a
wrong shape is a one-line :class:`CheckpointError`. ``.bin`` files are read with
``torch.load(weights_only=True)`` only; ``.safetensors`` are accepted too.

Vocabulary. ET-BERT's ``encryptd_vocab.txt`` has 60,005 entries: ``[PAD] [SEP] [CLS] [UNK] [MASK]`` then
60,000 WordPiece tokens learned (``tokenizers`` WordPieceTrainer, vocab_size 65536, min_frequency 2) from
their traffic corpus -- whole bigrams such as ``4500``, but also pieces such as ``0``, ``##6``, ``000``; a
bigram missing from it is split greedily into pieces. Its order depends on their corpus and cannot be
rebuilt here, so importing the published checkpoint needs that file (``vocab_path=``; the ids of the
embedding rows are only meaningful with it). Without it we use the *complete* bigram vocabulary: the same
5 specials in the same order, then all 65,536 bigrams ``0000``..``ffff`` (65,541 ids, every bigram one
token, id = 5 + 256 * b[i] + b[i+1]).

Input. ET-BERT's packet-level task hex-dumps the Ethernet frame and starts at byte 38 (after Ethernet,
a 20-byte IPv4 header and the two ports), up to 128 bigrams, then ``[CLS]`` + tokens cut to 128. Our
packet views start at the IP header with addresses and ports already masked, so ``skip_bytes`` defaults
to 0 (set 24 to drop the IPv4 header and ports exactly as ET-BERT did).
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from packetclip.encoders import _weights
from packetclip.encoders.base import EncoderConfig, TrafficEncoder, local_seed, select_rows
from packetclip.errors import CheckpointError, PacketClipError
from packetclip.util.progress import Progress

SPECIAL_TOKENS: tuple[str, ...] = ("[PAD]", "[SEP]", "[CLS]", "[UNK]", "[MASK]")  # ET-BERT's ids 0..4
N_BIGRAMS = 65536
COMPLETE_VOCAB_SIZE = len(SPECIAL_TOKENS) + N_BIGRAMS  # 65,541
ETBERT_PUBLISHED_VOCAB_SIZE = 60005
MODEL_TYPE = "packetclip-etbert"
CLASSIFIER_TYPE = "packetclip-etbert-classifier"
VOCAB_NAME = "vocab.txt"


# =============================================================================================== tokenizer

def complete_bigram_vocab() -> list[str]:
    """The 5 ET-BERT specials then every 4-hex-digit bigram in numeric order."""
    return list(SPECIAL_TOKENS) + [f"{i:04x}" for i in range(N_BIGRAMS)]


def _wordpiece(word: str, vocab: dict[str, int], unk: int) -> list[int]:
    """Greedy longest-match-first WordPiece, as UER-py's (and Google BERT's) WordpieceTokenizer."""
    pieces, start = [], 0
    while start < len(word):
        end, found = len(word), None
        while start < end:
            sub = word[start:end] if start == 0 else "##" + word[start:end]
            if sub in vocab:
                found = vocab[sub]
                break
            end -= 1
        if found is None:
            return [unk]
        pieces.append(found)
        start = end
    return pieces


class ETBertTokenizer:
    """Packet bytes -> stride-1 hex bigrams -> ids, with ``[CLS]`` first and ``[PAD]`` after the packet.

    ``vocab``: token list (index = id); None gives :func:`complete_bigram_vocab`. ``seq_length`` counts
    ``[CLS]``; ``skip_bytes`` drops that many leading bytes of every view first.
    """

    def __init__(self, vocab: Sequence[str] | None = None, *, seq_length: int = 128, skip_bytes: int = 0,
                 source: str | None = None):
        tokens = complete_bigram_vocab() if vocab is None else list(vocab)
        where = {"path": source} if source else {}
        if len(set(tokens)) != len(tokens):
            raise PacketClipError("vocabulary has duplicate tokens", **where)
        missing = [t for t in SPECIAL_TOKENS if t not in tokens]
        if missing:
            raise PacketClipError(f"vocabulary lacks special tokens: {', '.join(missing)}", **where)
        if seq_length < 2:
            raise PacketClipError("seq_length must be >= 2 ([CLS] plus one token)")
        if skip_bytes < 0:
            raise PacketClipError("skip_bytes must be >= 0")
        self.vocab = tokens
        self.token_to_id = {t: i for i, t in enumerate(tokens)}
        self.seq_length = int(seq_length)
        self.skip_bytes = int(skip_bytes)
        self.pad_id, self.sep_id, self.cls_id, self.unk_id, self.mask_id = (self.token_to_id[t] for t in SPECIAL_TOKENS)
        # Bigram -> token ids. Whole bigrams are one dict lookup; only the rest go through WordPiece.
        self._pieces: list[tuple[int, ...]] = []
        for b in range(N_BIGRAMS):
            word = f"{b:04x}"
            whole = self.token_to_id.get(word)
            self._pieces.append((whole,) if whole is not None else
                                tuple(_wordpiece(word, self.token_to_id, self.unk_id)))
        self._single = np.array([p[0] if len(p) == 1 else -1 for p in self._pieces], dtype=np.int64)
        self.every_bigram_is_one_token = bool((self._single >= 0).all())

    def __len__(self) -> int:
        return len(self.vocab)

    @property
    def is_complete_vocab(self) -> bool:
        return self.vocab == complete_bigram_vocab()

    @classmethod
    def from_vocab_file(cls, path, **kwargs) -> "ETBertTokenizer":
        """Read a UER/ET-BERT vocabulary file (one token per line, line number = id)."""
        path = Path(path)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            raise PacketClipError(f"cannot read vocabulary: {err.__class__.__name__}", path=str(path)) from None
        tokens = [line.strip() for line in lines]
        while tokens and not tokens[-1]:
            tokens.pop()
        return cls(tokens, source=str(path), **kwargs)

    def save_vocabulary(self, path) -> Path:
        path = Path(path)
        path.write_text("\n".join(self.vocab) + "\n", encoding="utf-8")
        return path

    @staticmethod
    def bigram_text(packet: bytes | np.ndarray) -> str:
        """ET-BERT's text form of a packet: ``"4500 0000 003c ..."`` (one word per adjacent byte pair)."""
        data = _packet_bytes(packet).tobytes()
        hexs = data.hex()
        return " ".join(hexs[2 * i : 2 * i + 4] for i in range(len(data) - 1))

    def tokenize(self, packet: bytes | np.ndarray) -> list[str]:
        """Tokens of one packet (no ``[CLS]``, no truncation), ``skip_bytes`` applied."""
        data = _packet_bytes(packet).astype(np.int64)[self.skip_bytes :]
        codes = data[:-1] * 256 + data[1:] if data.size > 1 else np.zeros(0, dtype=np.int64)
        return [self.vocab[i] for c in codes for i in self._pieces[int(c)]]

    def token_ids(self, views: np.ndarray, lengths: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Views uint8 [n, L] (+ true byte lengths) -> (input_ids, attention_mask), both int64 [n, seq_length]."""
        views = as_views(views)
        n, width = views.shape
        if lengths is None:
            lens = np.full(n, width, dtype=np.int64)
        else:
            lens = np.asarray(lengths, dtype=np.int64).reshape(-1)
            if lens.shape[0] != n:
                raise PacketClipError(f"lengths has {lens.shape[0]} entries for {n} views")
            lens = np.clip(lens, 0, width)
        body = views[:, self.skip_bytes :].astype(np.int64)
        n_bigrams = np.clip(lens - self.skip_bytes - 1, 0, None)
        room = self.seq_length - 1
        ids = np.full((n, self.seq_length), self.pad_id, dtype=np.int64)
        ids[:, 0] = self.cls_id
        if body.shape[1] >= 2:
            codes = body[:, :-1] * 256 + body[:, 1:]
        else:
            codes = np.zeros((n, 0), dtype=np.int64)
        if self.every_bigram_is_one_token:
            k = min(room, codes.shape[1])
            tok = self._single[codes[:, :k]]
            valid = np.arange(k)[None, :] < n_bigrams[:, None]
            ids[:, 1 : 1 + k] = np.where(valid, tok, self.pad_id)
            used = np.minimum(n_bigrams, k)
        else:  # a learned WordPiece vocabulary: a bigram may become several pieces
            used = np.zeros(n, dtype=np.int64)
            for r in range(n):
                seq: list[int] = []
                for c in codes[r, : n_bigrams[r]]:
                    seq.extend(self._pieces[int(c)])
                    if len(seq) >= room:
                        break
                seq = seq[:room]
                ids[r, 1 : 1 + len(seq)] = seq
                used[r] = len(seq)
        mask = (np.arange(self.seq_length)[None, :] < (used + 1)[:, None]).astype(np.int64)
        return torch.from_numpy(ids), torch.from_numpy(mask)


def _packet_bytes(packet) -> np.ndarray:
    if isinstance(packet, (bytes, bytearray, memoryview)):
        return np.frombuffer(bytes(packet), dtype=np.uint8)
    arr = np.asarray(packet)
    if arr.ndim != 1:
        raise PacketClipError(f"one packet must be 1-D bytes, got shape {arr.shape}")
    return as_views(arr[None, :])[0]


def as_views(views) -> np.ndarray:
    """Validate packet views: a 2-D array of byte values -> uint8 [n, L]."""
    arr = np.asarray(views)
    if arr.ndim != 2:
        raise PacketClipError(f"packet views must be a 2-D array [n_packets, n_bytes], got shape {arr.shape}")
    if arr.dtype != np.uint8:
        if arr.dtype.kind not in "iu" or (arr.size and (arr.min() < 0 or arr.max() > 255)):
            raise PacketClipError(f"packet views must hold bytes (uint8), got {arr.dtype}")
        arr = arr.astype(np.uint8)
    return arr


# =============================================================================================== model

@dataclass
class ETBertConfig(EncoderConfig):
    """BERT shape plus the ET-BERT input settings. Defaults are ET-BERT's (BERT-base).

    ``k_packets``: a flow's embedding (``embed_flows``) is the mean [CLS] state of its first k packets
    (ET-BERT itself is packet-level).
    """

    model_type = MODEL_TYPE

    vocab_size: int = COMPLETE_VOCAB_SIZE
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    dropout: float = 0.1
    layer_norm_eps: float = 1e-6
    uer_layer_norm: bool = True
    seq_length: int = 128
    skip_bytes: int = 0
    k_packets: int = 4

    def __post_init__(self):
        if self.hidden_size % self.num_heads:
            raise PacketClipError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        if self.seq_length > self.max_position_embeddings:
            raise PacketClipError("seq_length exceeds max_position_embeddings")
        if self.k_packets < 1:
            raise PacketClipError("k_packets must be >= 1")

    @classmethod
    def preset(cls, name: str, **overrides) -> "ETBertConfig":
        """``base`` (ET-BERT: 12 x 768), ``small`` (4 x 256) or ``tiny`` (2 x 64, for tests and quick runs)."""
        shapes = {
            "base": {},
            "small": {"hidden_size": 256, "num_layers": 4, "num_heads": 4, "intermediate_size": 1024},
            "tiny": {"hidden_size": 64, "num_layers": 2, "num_heads": 2, "intermediate_size": 256},
        }
        if name not in shapes:
            raise PacketClipError(f"unknown ET-BERT size {name!r} (use tiny, small or base)")
        return cls(**{**shapes[name], **overrides})

    @classmethod
    def upgrade(cls, data: dict) -> dict:
        """Older checkpoints nested the fields: ``{"model_type": ..., "etbert": {...}}``."""
        if isinstance(data.get("etbert"), dict) and data.get("model_type", MODEL_TYPE) == MODEL_TYPE:
            return {"model_type": MODEL_TYPE, **data["etbert"]}
        return data

    def to_bert_config(self):
        from transformers import BertConfig

        return BertConfig(
            vocab_size=self.vocab_size, hidden_size=self.hidden_size, num_hidden_layers=self.num_layers,
            num_attention_heads=self.num_heads, intermediate_size=self.intermediate_size, hidden_act="gelu",
            hidden_dropout_prob=self.dropout, attention_probs_dropout_prob=self.dropout,
            max_position_embeddings=self.max_position_embeddings, type_vocab_size=self.type_vocab_size,
            layer_norm_eps=self.layer_norm_eps, pad_token_id=0, attn_implementation="sdpa",
        )


def _resolve_config(config) -> ETBertConfig:
    if config is None:
        return ETBertConfig.preset("tiny")
    if isinstance(config, str):
        return ETBertConfig.preset(config)
    if isinstance(config, ETBertConfig):
        return config
    raise PacketClipError(f"config must be an ETBertConfig or a size name, got {type(config).__name__}")


class UerLayerNorm(nn.LayerNorm):
    """UER-py's LayerNorm: gamma * (x - mean) / (unbiased std + eps) + beta. Same parameters as nn.LayerNorm."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(-1, keepdim=True)
        std = x.std(-1, keepdim=True)
        return self.weight * (x - mean) / (std + self.eps) + self.bias


def _use_uer_layer_norm(model: nn.Module) -> None:
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.LayerNorm) and not isinstance(module, UerLayerNorm):
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            new = UerLayerNorm(module.normalized_shape, eps=module.eps)
            new.load_state_dict(module.state_dict())
            setattr(parent, child, new)


def build_bert(config: ETBertConfig):
    """A ``transformers.BertModel`` (with pooler) of ET-BERT's shape; UER LayerNorm when configured."""
    from transformers import BertModel

    model = BertModel(config.to_bert_config(), add_pooling_layer=True)
    if config.uer_layer_norm:
        _use_uer_layer_norm(model)
    return model


# =============================================================================================== UER import

_UER_LAYER_TO_HF = {
    "self_attn.linear_layers.0.weight": "attention.self.query.weight",
    "self_attn.linear_layers.0.bias": "attention.self.query.bias",
    "self_attn.linear_layers.1.weight": "attention.self.key.weight",
    "self_attn.linear_layers.1.bias": "attention.self.key.bias",
    "self_attn.linear_layers.2.weight": "attention.self.value.weight",
    "self_attn.linear_layers.2.bias": "attention.self.value.bias",
    "self_attn.final_linear.weight": "attention.output.dense.weight",
    "self_attn.final_linear.bias": "attention.output.dense.bias",
    "layer_norm_1.gamma": "attention.output.LayerNorm.weight",
    "layer_norm_1.beta": "attention.output.LayerNorm.bias",
    "feed_forward.linear_1.weight": "intermediate.dense.weight",
    "feed_forward.linear_1.bias": "intermediate.dense.bias",
    "feed_forward.linear_2.weight": "output.dense.weight",
    "feed_forward.linear_2.bias": "output.dense.bias",
    "layer_norm_2.gamma": "output.LayerNorm.weight",
    "layer_norm_2.beta": "output.LayerNorm.bias",
}
_UER_EMBEDDING_TO_HF = {
    "embedding.word_embedding.weight": "embeddings.word_embeddings.weight",
    "embedding.position_embedding.weight": "embeddings.position_embeddings.weight",
    "embedding.layer_norm.gamma": "embeddings.LayerNorm.weight",
    "embedding.layer_norm.beta": "embeddings.LayerNorm.bias",
}
_UER_SEGMENT = "embedding.segment_embedding.weight"
_UER_SEGMENT_ROWS = 3  # UER's WordPosSegEmbedding: 0 = padding, 1 = segment A, 2 = segment B


def uer_layer_shapes(config: ETBertConfig) -> dict[str, tuple]:
    """Names and shapes of the UER-py tensors of one transformer layer (prefix-free)."""
    h, f = config.hidden_size, config.intermediate_size
    shapes = {}
    for k in ("0", "1", "2"):
        shapes[f"self_attn.linear_layers.{k}.weight"] = (h, h)
        shapes[f"self_attn.linear_layers.{k}.bias"] = (h,)
    shapes.update({
        "self_attn.final_linear.weight": (h, h), "self_attn.final_linear.bias": (h,),
        "layer_norm_1.gamma": (h,), "layer_norm_1.beta": (h,),
        "feed_forward.linear_1.weight": (f, h), "feed_forward.linear_1.bias": (f,),
        "feed_forward.linear_2.weight": (h, f), "feed_forward.linear_2.bias": (h,),
        "layer_norm_2.gamma": (h,), "layer_norm_2.beta": (h,),
    })
    return shapes


def uer_expected_shapes(config: ETBertConfig) -> dict[str, tuple]:
    """Every tensor a UER-py BERT encoder checkpoint of this shape must hold (heads excluded)."""
    h = config.hidden_size
    shapes = {
        "embedding.word_embedding.weight": (config.vocab_size, h),
        "embedding.position_embedding.weight": (config.max_position_embeddings, h),
        _UER_SEGMENT: (_UER_SEGMENT_ROWS, h),
        "embedding.layer_norm.gamma": (h,),
        "embedding.layer_norm.beta": (h,),
    }
    for i in range(config.num_layers):
        for key, shape in uer_layer_shapes(config).items():
            shapes[f"encoder.transformer.{i}.{key}"] = shape
    return shapes


def _uer_head_groups(config: ETBertConfig, state: dict) -> dict[str, dict[str, tuple]]:
    """Optional UER heads: MLM and SOP/NSP pre-training targets, and a fine-tuned classifier."""
    h, v = config.hidden_size, config.vocab_size
    n_out = state["output_layer_2.weight"].shape[0] if "output_layer_2.weight" in state else 0
    return {
        "mlm": {"target.mlm_linear_1.weight": (h, h), "target.mlm_linear_1.bias": (h,),
                "target.layer_norm.gamma": (h,), "target.layer_norm.beta": (h,),
                "target.mlm_linear_2.weight": (v, h), "target.mlm_linear_2.bias": (v,)},
        "sop": {"target.nsp_linear_1.weight": (h, h), "target.nsp_linear_1.bias": (h,),
                "target.nsp_linear_2.weight": (2, h), "target.nsp_linear_2.bias": (2,)},
        "classifier": {"output_layer_1.weight": (h, h), "output_layer_1.bias": (h,),
                       "output_layer_2.weight": (n_out, h), "output_layer_2.bias": (n_out,)},
    }


def read_uer_state_dict(path) -> dict[str, torch.Tensor]:
    """Read a UER-py checkpoint: ``torch.load(weights_only=True)`` for .bin/.pt, safetensors otherwise."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError("checkpoint file not found", path=str(path))
    if path.suffix == ".safetensors":
        state = _weights.read_safetensors(path)
    else:
        try:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as err:  # UnpicklingError, RuntimeError (bad zip), EOFError ... all mean "not loadable"
            msg = " ".join(str(err).split())[:160]
            raise CheckpointError(f"cannot read checkpoint with torch.load(weights_only=True): "
                                  f"{type(err).__name__}: {msg}", path=str(path)) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not state:
        raise CheckpointError("checkpoint is not a non-empty state dict", path=str(path))
    bad = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"checkpoint holds non-tensor entries: {', '.join(map(str, bad[:5]))}", path=str(path))
    if all(k.startswith("module.") for k in state):  # saved from DataParallel
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def infer_uer_config(state: dict, *, num_heads: int | None = None, **overrides) -> ETBertConfig:
    """Read the BERT shape off a UER-py state dict (heads: ``num_heads`` or hidden/64)."""
    need = ["embedding.word_embedding.weight", "embedding.position_embedding.weight",
            "encoder.transformer.0.feed_forward.linear_1.weight"]
    missing = [k for k in need if k not in state]
    if missing:
        raise CheckpointError(f"not a UER-py BERT checkpoint: missing keys: {', '.join(missing)}")
    vocab, hidden = state["embedding.word_embedding.weight"].shape
    layer_ids = {int(m.group(1)) for k in state if (m := re.match(r"encoder\.transformer\.(\d+)\.", k))}
    if num_heads is None:
        if hidden % 64:
            raise CheckpointError(f"hidden size {hidden} is not a multiple of 64: pass num_heads explicitly")
        num_heads = hidden // 64
    kwargs = dict(
        vocab_size=int(vocab), hidden_size=int(hidden), num_layers=max(layer_ids) + 1, num_heads=int(num_heads),
        intermediate_size=int(state["encoder.transformer.0.feed_forward.linear_1.weight"].shape[0]),
        max_position_embeddings=int(state["embedding.position_embedding.weight"].shape[0]),
    )
    kwargs["seq_length"] = min(128, kwargs["max_position_embeddings"])
    kwargs.update(overrides)
    try:
        return ETBertConfig(**kwargs)
    except PacketClipError as err:
        raise CheckpointError(str(err)) from None


def uer_to_bert_state(state: dict, config: ETBertConfig, path=None) -> tuple[dict, dict, str | None]:
    """Map a UER-py state dict onto BertModel names.

    Returns (bert_state, extras, pooler_source): ``extras`` maps "mlm"/"sop"/"classifier" to the UER tensors
    of the heads present; ``pooler_source`` names the UER head the pooler came from (None: not in file).
    """
    required = uer_expected_shapes(config)
    groups = _uer_head_groups(config, state)
    optional = {k for g in groups.values() for k in g}
    missing = set(required) - set(state)
    unexpected = set(state) - set(required) - optional
    problems = []
    if missing:
        problems.append(f"missing keys: {_weights._names(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_weights._names(unexpected)}")
    present = {name: g for name, g in groups.items() if any(k in state for k in g)}
    for name, g in present.items():
        partial = set(g) - set(state)
        if partial:
            problems.append(f"incomplete {name} head, missing: {_weights._names(partial)}")
    if problems:
        raise CheckpointError("checkpoint does not match a UER-py BERT: " + "; ".join(problems), path=path)
    for name, shape in list(required.items()) + [kv for g in present.values() for kv in g.items()]:
        have = tuple(state[name].shape)
        if have != tuple(shape):
            raise CheckpointError(f"wrong shape for {name}: checkpoint has {list(have)}, "
                                  f"model expects {list(shape)}", path=path)

    out = {hf: state[uer] for uer, hf in _UER_EMBEDDING_TO_HF.items()}
    out["embeddings.token_type_embeddings.weight"] = state[_UER_SEGMENT][1 : 1 + config.type_vocab_size]
    for i in range(config.num_layers):
        for uer, hf in _UER_LAYER_TO_HF.items():
            out[f"encoder.layer.{i}.{hf}"] = state[f"encoder.transformer.{i}.{uer}"]
    pooler_source = None
    for head, prefix in (("classifier", "output_layer_1"), ("sop", "target.nsp_linear_1")):
        if head in present:
            out["pooler.dense.weight"] = state[f"{prefix}.weight"]
            out["pooler.dense.bias"] = state[f"{prefix}.bias"]
            pooler_source = prefix
            break
    extras = {name: {k: state[k] for k in g} for name, g in present.items()}
    return {k: v.detach().to(torch.float32).clone() for k, v in out.items()}, extras, pooler_source


# =============================================================================================== encoder

class ETBertEncoder(TrafficEncoder):
    """ET-BERT as a frozen packet encoder: tokenizer + ``BertModel``. ``embed(views)`` embeds packets;
    ``embed_flows(workspace or packet views, flow_ids)`` is the encoder contract (mean [CLS] of each flow's
    first ``config.k_packets`` packets)."""

    model_type = MODEL_TYPE

    def __init__(self, config: ETBertConfig | str | None = "tiny", tokenizer: ETBertTokenizer | None = None, *,
                 device: str = "cpu", seed: int = 7):
        from packetclip.encoders.lens import _device

        self.config = _resolve_config(config)
        if tokenizer is None:
            tokenizer = ETBertTokenizer(seq_length=self.config.seq_length, skip_bytes=self.config.skip_bytes)
        if len(tokenizer) != self.config.vocab_size:
            raise PacketClipError(f"vocabulary has {len(tokenizer)} tokens but the model expects "
                                  f"{self.config.vocab_size}")
        self.tokenizer = tokenizer
        self._device = _device(device)
        with local_seed(seed):
            self.model = build_bert(self.config).to(self._device).eval()
        self.extras_: dict = {}
        self.pooler_source_: str | None = None

    # ------------------------------------------------------------------ contract
    @property
    def device(self) -> torch.device:
        return self._device

    def to(self, device) -> "ETBertEncoder":
        from packetclip.encoders.lens import _device

        self._device = _device(device)
        self.model.to(self._device)
        return self

    @property
    def embed_dim(self) -> int:
        return self.config.hidden_size

    @property
    def fingerprint(self) -> str:
        vocab = hashlib.sha256("\n".join(self.tokenizer.vocab).encode()).hexdigest()
        config = {**self.config.to_dict(), "vocab": vocab}
        return self._fingerprint_of(self.model, config, MODEL_TYPE)

    def store_settings(self) -> dict:
        return {"first_k": self.config.k_packets, "pooling": "cls-mean"}

    def _embed_workspace_flows(self, workspace, flow_ids: np.ndarray, *, batch_size: int = 64,
                               progress: bool = False) -> np.ndarray:
        packets = workspace.packet_views(flow_ids, first_k=self.config.k_packets)
        return self._embed_frames(packets, flow_ids, batch_size=batch_size, progress=progress, where=workspace.root)

    def _embed_frames(self, frames, flow_ids=None, *, batch_size=None, progress=False, where=None) -> np.ndarray:
        """``frames``: :class:`~packetclip.traffic.workspace.PacketViews` or a ``(views, flow_id)`` pair."""
        from packetclip.encoders.data import first_k_packets, packet_lengths

        views, flow_id = (frames.views, frames.flow_id) if hasattr(frames, "views") else frames
        k = self.config.k_packets
        ids, firsts, taken = first_k_packets(np.asarray(views, np.uint8), np.asarray(flow_id, np.int64), k)
        present = np.arange(k)[None, :] < taken[:, None]
        flat = firsts[present]
        per_packet = self.embed(flat, packet_lengths(flat), batch_size=batch_size or 64)
        out = np.zeros((len(ids), self.embed_dim), np.float32)
        np.add.at(out, np.repeat(np.arange(len(ids)), taken), per_packet)
        out /= np.maximum(taken, 1)[:, None]
        if flow_ids is None:
            return out
        return select_rows(ids, out, np.asarray(flow_ids, np.int64), "packets", path=where)

    @classmethod
    def from_uer_checkpoint(cls, path, *, vocab_path=None, num_heads: int | None = None,
                            config: ETBertConfig | None = None, device: str = "cpu") -> "ETBertEncoder":
        """Import an ET-BERT / UER-py checkpoint (``pretrained_model.bin`` or .safetensors).

        Pass ET-BERT's ``encryptd_vocab.txt`` as ``vocab_path`` for its published weights: the embedding rows
        follow that file's order. ``config`` (optional) is checked against the tensors' shapes.
        """
        path = Path(path)
        state = read_uer_state_dict(path)
        if config is None:
            config = infer_uer_config(state, num_heads=num_heads)
        tokenizer = (ETBertTokenizer.from_vocab_file(vocab_path, seq_length=config.seq_length,
                                                     skip_bytes=config.skip_bytes)
                     if vocab_path is not None else None)
        if tokenizer is not None and len(tokenizer) != config.vocab_size:
            raise CheckpointError(f"vocabulary has {len(tokenizer)} tokens but the checkpoint's embedding has "
                                  f"{config.vocab_size} rows", path=str(vocab_path))
        if tokenizer is None and config.vocab_size != COMPLETE_VOCAB_SIZE:
            raise CheckpointError(f"checkpoint has a {config.vocab_size}-token vocabulary: pass its vocab file "
                                  f"(ET-BERT: models/encryptd_vocab.txt) as vocab_path", path=str(path))
        bert_state, extras, pooler_source = uer_to_bert_state(state, config, path=str(path))
        enc = cls(config, tokenizer, device=device)
        own = enc.model.state_dict()
        if pooler_source is None:  # keep the (seeded) random pooler, like UER fine-tuning from a bare encoder
            bert_state["pooler.dense.weight"] = own["pooler.dense.weight"]
            bert_state["pooler.dense.bias"] = own["pooler.dense.bias"]
        _weights.check_tensors({k: tuple(v.shape) for k, v in own.items()}, bert_state, path)
        enc.model.load_state_dict(bert_state, strict=True)
        enc.extras_ = extras
        enc.pooler_source_ = pooler_source
        return enc

    def token_ids(self, views, lengths=None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(input_ids, attention_mask)`` of packet views (see :meth:`ETBertTokenizer.token_ids`)."""
        return self.tokenizer.token_ids(views, lengths)

    @torch.no_grad()
    def embed(self, views, lengths=None, batch_size: int = 64, pooling: str = "cls") -> np.ndarray:
        """Packet views uint8 [n, L] -> float32 [n, hidden]: the [CLS] state (``pooling="mean"``: mean of tokens)."""
        if pooling not in ("cls", "mean", "pooler"):
            raise PacketClipError("pooling must be cls, mean or pooler")
        ids, mask = self.token_ids(views, lengths)
        self.model.eval()
        out = np.zeros((ids.shape[0], self.config.hidden_size), dtype=np.float32)
        for start in range(0, ids.shape[0], batch_size):
            i = ids[start : start + batch_size].to(self.device)
            m = mask[start : start + batch_size].to(self.device)
            res = self.model(input_ids=i, attention_mask=m)
            if pooling == "cls":
                vec = res.last_hidden_state[:, 0]
            elif pooling == "pooler":
                vec = res.pooler_output
            else:
                w = m.unsqueeze(-1).to(res.last_hidden_state.dtype)
                vec = (res.last_hidden_state * w).sum(1) / w.sum(1).clamp_min(1.0)
            out[start : start + vec.shape[0]] = vec.float().cpu().numpy()
        return out

    def save_pretrained(self, directory) -> Path:
        directory = Path(directory)
        _weights.save_module(self.model, directory, self.config.to_dict(), {"model_type": MODEL_TYPE})
        self.tokenizer.save_vocabulary(directory / VOCAB_NAME)
        return directory

    @classmethod
    def from_pretrained(cls, directory, *, device: str = "cpu") -> "ETBertEncoder":
        directory = Path(directory)
        raw = _weights.read_config(directory)
        cfg_path = str(directory / _weights.CONFIG_NAME)
        if raw.get("model_type") != MODEL_TYPE:
            raise CheckpointError("config.json is not an ET-BERT encoder config", path=cfg_path)
        config = ETBertConfig.from_dict(raw, path=cfg_path)
        tokenizer = _load_saved_vocab(directory, config)
        enc = cls(config, tokenizer)
        _weights.load_module(enc.model, directory)
        return enc.to(device)


def _load_saved_vocab(directory: Path, config: ETBertConfig) -> ETBertTokenizer:
    vocab_file = directory / VOCAB_NAME
    if not vocab_file.is_file():
        raise CheckpointError(f"no {VOCAB_NAME} in model directory", path=str(directory))
    try:
        tok = ETBertTokenizer.from_vocab_file(vocab_file, seq_length=config.seq_length, skip_bytes=config.skip_bytes)
    except CheckpointError:
        raise
    except PacketClipError as err:
        raise CheckpointError(err.detail, path=str(vocab_file)) from None
    if len(tok) != config.vocab_size:
        raise CheckpointError(f"vocabulary has {len(tok)} tokens, config says {config.vocab_size}", path=str(vocab_file))
    return tok


# =============================================================================================== fine-tuning

class ETBertClassifierNet(nn.Module):
    """ET-BERT's fine-tuning classifier: BERT -> tanh(dense([CLS])) (the BERT pooler) -> linear -> logits."""

    def __init__(self, bert: nn.Module, hidden_size: int, n_classes: int):
        super().__init__()
        self.bert = bert
        self.head = nn.Linear(hidden_size, n_classes)
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        out = self.bert(input_ids=input_ids, attention_mask=attention_mask)
        return self.head(out.pooler_output)


class ETBertClassifier:
    """ET-BERT-style end-to-end fine-tuning baseline (encoder + head, every weight trained).

    scikit-learn style: hyper-parameters here, learned state (``network_``, ``classes_``, ``loss_history_``)
    set by :meth:`fit`. ``config``: an :class:`ETBertConfig` or a size name (``tiny`` default, ``base`` =
    ET-BERT). ``init_checkpoint``: a UER-py / ET-BERT checkpoint to start from (its shape wins; pass
    ``vocab_path`` for ET-BERT's 60,005-token vocabulary). ``n_classes``: None derives the classes from
    ``y``; an int fixes the head to that many outputs and expects labels 0..n_classes-1.
    Paper settings: 10 epochs, batch 32, AdamW lr 2e-5 with 10 % linear warm-up then linear decay,
    weight decay 0.01 (not on biases/LayerNorm), dropout 0.1, [CLS] pooling. From random init a higher
    learning rate (1e-4 .. 1e-3) is needed on small data.
    """

    def __init__(self, config: ETBertConfig | str | None = "tiny", n_classes: int | None = None, *,
                 init_checkpoint=None, vocab_path=None, num_heads: int | None = None, epochs: int = 10,
                 batch_size: int = 32, learning_rate: float = 2e-5, warmup: float = 0.1,
                 weight_decay: float = 0.01, seed: int = 7, device: str = "cpu", progress: bool = False):
        self.config = config
        self.n_classes = n_classes
        self.init_checkpoint = init_checkpoint
        self.vocab_path = vocab_path
        self.num_heads = num_heads
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.warmup = warmup
        self.weight_decay = weight_decay
        self.seed = seed
        self.device = device
        self.progress = progress

    # ------------------------------------------------------------------ building
    def _build(self, n_out: int) -> None:
        with local_seed(self.seed):
            self._build_seeded(n_out)

    def _build_seeded(self, n_out: int) -> None:
        if self.init_checkpoint is not None:
            given = self.config if isinstance(self.config, ETBertConfig) else None
            encoder = ETBertEncoder.from_uer_checkpoint(self.init_checkpoint, vocab_path=self.vocab_path,
                                                        num_heads=self.num_heads, config=given)
        else:
            tok = None
            cfg = _resolve_config(self.config)
            if self.vocab_path is not None:
                tok = ETBertTokenizer.from_vocab_file(self.vocab_path, seq_length=cfg.seq_length,
                                                      skip_bytes=cfg.skip_bytes)
                if cfg.vocab_size != len(tok):
                    cfg = ETBertConfig(**{**cfg.to_dict(), "vocab_size": len(tok)})
            encoder = ETBertEncoder(cfg, tok, seed=self.seed)
        self.encoder_ = encoder
        self.config_ = encoder.config
        self.network_ = ETBertClassifierNet(encoder.model, encoder.config.hidden_size, n_out).to(self.device)

    def _labels(self, y) -> np.ndarray:
        y = np.asarray(y)
        if y.ndim != 1:
            raise PacketClipError("labels must be a 1-D array")
        if self.n_classes is None:
            self.classes_ = np.unique(y)
            return np.searchsorted(self.classes_, y)
        if y.dtype.kind not in "iu" or (y.size and (y.min() < 0 or y.max() >= self.n_classes)):
            raise PacketClipError(f"with n_classes={self.n_classes} labels must be integers in [0, {self.n_classes})")
        self.classes_ = np.arange(self.n_classes)
        return y.astype(np.int64)

    def _optimizer(self, total_steps: int):
        decay, no_decay = [], []
        for name, p in self.network_.named_parameters():
            if not p.requires_grad:
                continue
            (no_decay if (name.endswith(".bias") or "LayerNorm" in name) else decay).append(p)
        groups = [{"params": decay, "weight_decay": self.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        try:  # the fused kernel matters: the 65k-row bigram embedding dominates the optimizer step
            opt = torch.optim.AdamW(groups, lr=self.learning_rate, fused=True)
        except (RuntimeError, TypeError):
            opt = torch.optim.AdamW(groups, lr=self.learning_rate)
        warm = max(1, int(round(total_steps * self.warmup)))

        def schedule(step: int) -> float:
            if step < warm:
                return (step + 1) / warm
            return max(0.0, (total_steps - step) / max(1, total_steps - warm))

        return opt, torch.optim.lr_scheduler.LambdaLR(opt, schedule)

    # ------------------------------------------------------------------ sklearn API
    def fit(self, views, y, lengths=None) -> "ETBertClassifier":
        """Fine-tune encoder and head end to end on packet views uint8 [n, L] with labels ``y``."""
        views = as_views(views)
        target = self._labels(y)
        if target.shape[0] != views.shape[0]:
            raise PacketClipError(f"{views.shape[0]} views but {target.shape[0]} labels")
        if views.shape[0] == 0:
            raise PacketClipError("cannot fit on zero packets")
        self._build(len(self.classes_))
        ids, mask = self.encoder_.token_ids(views, lengths)
        labels = torch.as_tensor(target, dtype=torch.long)
        n = ids.shape[0]
        steps_per_epoch = math.ceil(n / self.batch_size)
        total = max(1, steps_per_epoch * self.epochs)
        opt, sched = self._optimizer(total)
        gen = torch.Generator().manual_seed(self.seed)
        loss_fn = nn.CrossEntropyLoss()
        self.loss_history_ = []
        with Progress("fine-tuning ET-BERT baseline", total, enabled=self.progress) as bar, local_seed(self.seed):
            self.network_.train()
            for _ in range(self.epochs):
                order = torch.randperm(n, generator=gen)
                running = 0.0
                for step in range(steps_per_epoch):
                    idx = order[step * self.batch_size : (step + 1) * self.batch_size]
                    logits = self.network_(ids[idx].to(self.device), mask[idx].to(self.device))
                    loss = loss_fn(logits, labels[idx].to(self.device))
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sched.step()
                    running += loss.item() * idx.numel()
                    bar.advance(1)
                self.loss_history_.append(running / n)
        self.network_.eval()
        return self

    def _require_fitted(self):
        if not hasattr(self, "network_"):
            raise PacketClipError("ETBertClassifier is not fitted: call fit() or from_pretrained() first")

    @torch.no_grad()
    def predict_proba(self, views, lengths=None, batch_size: int = 128) -> np.ndarray:
        self._require_fitted()
        ids, mask = self.encoder_.token_ids(views, lengths)
        self.network_.eval()
        chunks = []
        for start in range(0, ids.shape[0], batch_size):
            logits = self.network_(ids[start : start + batch_size].to(self.device),
                                   mask[start : start + batch_size].to(self.device))
            chunks.append(torch.softmax(logits.float(), dim=-1).cpu().numpy())
        if not chunks:
            return np.zeros((0, len(self.classes_)), dtype=np.float32)
        return np.concatenate(chunks).astype(np.float32)

    def predict(self, views, lengths=None) -> np.ndarray:
        return self.classes_[self.predict_proba(views, lengths).argmax(axis=1)]

    def score(self, views, y, lengths=None) -> float:
        return float((self.predict(views, lengths) == np.asarray(y)).mean())

    # ------------------------------------------------------------------ cost
    def example_inputs(self, n_packets: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """A full-length dummy batch (every position real) for cost measurements."""
        self._require_fitted()
        seq = self.config_.seq_length
        views = np.arange(n_packets * (seq + self.config_.skip_bytes), dtype=np.int64).reshape(n_packets, -1) % 256
        return self.encoder_.token_ids(views.astype(np.uint8))

    def trainable_parameters(self) -> int:
        self._require_fitted()
        return count_trainable_params(self.network_)

    def flops_per_packet(self) -> int:
        """Forward FLOPs for one full-length packet (attention included)."""
        self._require_fitted()
        return count_flops(self.network_, self.example_inputs(1))

    # ------------------------------------------------------------------ persistence
    def save_pretrained(self, directory) -> Path:
        self._require_fitted()
        directory = Path(directory)
        hyper = {k: getattr(self, k) for k in ("epochs", "batch_size", "learning_rate", "warmup", "weight_decay", "seed")}
        cfg = {"model_type": CLASSIFIER_TYPE, "etbert": self.config_.to_dict(), "classes": self.classes_.tolist(),
               "n_classes": self.n_classes, "hyperparameters": hyper}
        _weights.save_module(self.network_, directory, cfg, {"model_type": CLASSIFIER_TYPE})
        self.encoder_.tokenizer.save_vocabulary(directory / VOCAB_NAME)
        return directory

    @classmethod
    def from_pretrained(cls, directory, *, device: str = "cpu") -> "ETBertClassifier":
        directory = Path(directory)
        raw = _weights.read_config(directory)
        cfg_path = str(directory / _weights.CONFIG_NAME)
        if raw.get("model_type") != CLASSIFIER_TYPE or not isinstance(raw.get("etbert"), dict) \
                or not isinstance(raw.get("classes"), list) or not raw["classes"]:
            raise CheckpointError("config.json is not an ET-BERT classifier config", path=cfg_path)
        config = ETBertConfig.from_dict({"model_type": MODEL_TYPE, **raw["etbert"]}, path=cfg_path)
        hyper = raw.get("hyperparameters") or {}
        clf = cls(config, raw.get("n_classes"), device=device,
                  **{k: v for k, v in hyper.items() if k in ("epochs", "batch_size", "learning_rate", "warmup",
                                                               "weight_decay", "seed")})
        tok = _load_saved_vocab(directory, config)
        clf.encoder_ = ETBertEncoder(config, tok, device=device)
        clf.config_ = config
        clf.classes_ = np.asarray(raw["classes"])
        clf.network_ = ETBertClassifierNet(clf.encoder_.model, config.hidden_size, len(clf.classes_))
        _weights.load_module(clf.network_, directory)
        clf.network_.to(device).eval()
        clf.loss_history_ = []
        return clf


# =============================================================================================== cost

def count_trainable_params(model: nn.Module) -> int:
    """Number of parameters that receive gradients (shared tensors counted once)."""
    seen, total = set(), 0
    for p in model.parameters():
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total


def count_flops(model: nn.Module, example) -> int:
    """Forward FLOPs of ``model`` on ``example`` (a tensor, a tuple of positional args, or a kwargs dict).

    Uses ``torch.utils.flop_counter.FlopCounterMode`` with the MHA fast path off and the MATH SDPA
    backend, so attention is decomposed into the matmuls the counter sees (fused CPU attention kernels
    would otherwise count as 0). A multiply-add counts as 2 FLOPs. Pass a batch of one for per-packet cost.
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    fastpath = torch.backends.mha.get_fastpath_enabled()
    model.eval()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad(), sdpa_kernel([SDPBackend.MATH]), FlopCounterMode(display=False) as counter:
            if isinstance(example, dict):
                model(**example)
            elif isinstance(example, (tuple, list)):
                model(*example)
            else:
                model(example)
        return int(counter.get_total_flops())
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
        model.train(was_training)
