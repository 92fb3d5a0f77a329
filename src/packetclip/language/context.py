"""Host context of flows: moved to :mod:`packetclip.traffic.context` (it is traffic feature code); re-exported
here for the language stage that puts it into sentences."""

from packetclip.traffic.context import (CONTEXT_COLUMNS, ContextInputError, HostContextPlugin, add_host_context,
                                        has_context_inputs, host_context)

__all__ = ["CONTEXT_COLUMNS", "ContextInputError", "HostContextPlugin", "add_host_context", "has_context_inputs",
           "host_context"]
