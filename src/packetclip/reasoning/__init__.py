"""reasoning stage."""
