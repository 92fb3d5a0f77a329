"""packetclip: traffic ↔ language alignment for network security (PacketCLIP + Lens)."""

__version__ = "0.1.0"
