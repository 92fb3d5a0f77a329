"""encoders stage: traffic encoders (Lens, flow-table, ET-BERT) and the text encoder, behind one contract.

``load_encoder(path)`` loads any of them by the ``model_type`` of its config.json; see
:mod:`packetclip.encoders.base` for the contract (``embed_flows`` / ``embed_texts``, ``fingerprint``,
``device``, ``embed_dim``).
"""

from packetclip.encoders.base import (EncoderConfig, TextEncoderBase, TrafficEncoder,  # noqa: F401
                                      load_encoder)

__all__ = ["EncoderConfig", "TextEncoderBase", "TrafficEncoder", "load_encoder"]
