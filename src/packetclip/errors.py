"""One error type for everything a user can get wrong, so the CLI can print one line and exit 2."""

from __future__ import annotations


class PacketClipError(Exception):
    """Bad input or configuration. Its message is shown to the user as a single line.

    ``path`` and ``offset`` locate the problem in an input file when known.
    """

    def __init__(self, message: str, *, path: str | None = None, offset: int | None = None):
        self.path = None if path is None else str(path)
        self.offset = offset
        self.detail = message
        where = ""
        if self.path is not None:
            where = f"{self.path}"
            if offset is not None:
                where += f" (offset {offset})"
            where += ": "
        super().__init__(f"{where}{message}")

    def one_line(self) -> str:
        return " ".join(str(self).split())


class CaptureFormatError(PacketClipError):
    """A capture file is not a readable pcap/pcapng."""


class DatasetFormatError(PacketClipError):
    """A flow table / ground-truth file does not have the expected shape."""


class CheckpointError(PacketClipError):
    """A saved model does not match its config (missing/extra keys, wrong shapes)."""
