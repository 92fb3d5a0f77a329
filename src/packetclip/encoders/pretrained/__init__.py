"""Encoders shipped inside the package, loaded by name; ``lens-tiny`` is the default packet encoder.

Each shipped encoder is a folder next to this module: ``config.json`` + ``model.safetensors`` (what
``from_pretrained`` reads), ``metadata.json`` (the card's figures: data, steps, probe and generation scores, the
weights' sha256) and ``card.md`` (rendered from ``metadata.json`` by :mod:`packetclip.encoders.pretrained.card`,
which also refreshes the metadata after new weights are copied in). They ship as package data, so a plain
``pip install`` gives every stage a pre-trained packet encoder without pre-training first.

Names resolve like Hugging Face's ``from_pretrained``: an existing local folder of that name wins, otherwise a
shipped name is the packaged folder. :func:`resolve_encoder` is the one place that mapping lives.
"""

from __future__ import annotations

import json
from pathlib import Path

from packetclip.errors import PacketClipError

#: The packet encoder every stage uses when none is named (``--encoder`` left out).
DEFAULT_PACKET_ENCODER = "lens-tiny"

METADATA_NAME = "metadata.json"
CARD_NAME = "card.md"

_ROOT = Path(__file__).resolve().parent


def shipped_names() -> list[str]:
    """Names of the encoders in the package (folders here with a ``config.json``)."""
    return sorted(p.name for p in _ROOT.iterdir() if p.is_dir() and (p / "config.json").is_file())


def shipped_path(name: str) -> Path:
    """The packaged folder of shipped encoder ``name``; an unknown name is one clear line."""
    folder = _ROOT / str(name)
    if str(name) not in shipped_names():
        known = ", ".join(shipped_names()) or "none"
        raise PacketClipError(f"no shipped encoder named {name!r} (shipped: {known})")
    return folder


def is_shipped_name(value) -> bool:
    """True when ``value`` names a shipped encoder and is not an existing local folder."""
    if value is None:
        return False
    text = str(value)
    return not Path(text).is_dir() and "/" not in text and "\\" not in text and text in shipped_names()


def resolve_encoder(value: str | Path) -> Path:
    """A local encoder folder as given, or the packaged folder of a shipped name (``lens-tiny``).

    Anything else comes back unchanged as a path, so the caller's own "not found" message still applies.
    """
    if is_shipped_name(value):
        return shipped_path(str(value))
    return Path(value)


def default_packet_encoder_path() -> Path:
    """The packaged folder of :data:`DEFAULT_PACKET_ENCODER`."""
    return shipped_path(DEFAULT_PACKET_ENCODER)


def default_packet_encoder(*, device: str = "cpu"):
    """The shipped pre-trained Lens packet encoder (:data:`DEFAULT_PACKET_ENCODER`), loaded onto ``device``."""
    from packetclip.encoders.lens import LensModel

    return LensModel.from_pretrained(default_packet_encoder_path(), device=device)


def metadata(name: str = DEFAULT_PACKET_ENCODER) -> dict:
    """The card's figures of a shipped encoder (its ``metadata.json``; empty when it has none)."""
    path = shipped_path(name) / METADATA_NAME
    return json.loads(path.read_text()) if path.is_file() else {}


__all__ = ["DEFAULT_PACKET_ENCODER", "default_packet_encoder", "default_packet_encoder_path", "is_shipped_name",
           "metadata", "resolve_encoder", "shipped_names", "shipped_path"]
