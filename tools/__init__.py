"""Developer tools (data generators, local helpers)."""
