"""encoders stage: traffic encoders (Lens, flow-table, ET-BERT) and the text encoder, behind one contract.

``load_encoder(path)`` loads any of them by the ``model_type`` of its config.json; see
:mod:`packetclip.encoders.base` for the contract (``embed_flows`` / ``embed_texts``, ``fingerprint``,
``device``, ``embed_dim``). ``default_packet_encoder()`` is the pre-trained Lens shipped in the package
(``lens-tiny``; :mod:`packetclip.encoders.pretrained`), also loadable by that name wherever a folder is asked for.
"""

from packetclip.encoders.base import (EncoderConfig, TextEncoderBase, TrafficEncoder,  # noqa: F401
                                      load_encoder)
from packetclip.encoders.pretrained import DEFAULT_PACKET_ENCODER, default_packet_encoder  # noqa: F401

__all__ = ["DEFAULT_PACKET_ENCODER", "EncoderConfig", "TextEncoderBase", "TrafficEncoder", "default_packet_encoder",
           "load_encoder"]
