"""The conformance suite every backend runs against itself (a pytest plugin, inert by default)."""
