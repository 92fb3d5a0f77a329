"""The analyst console (``packetclip serve``): a local web page with live alerts, their explanations and
natural-language search. :func:`packetclip.console.server.create_app` builds the app from explicit objects."""
