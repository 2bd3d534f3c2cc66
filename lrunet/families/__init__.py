"""Architecture families, one module each; `lrunet.registry` imports every module here.

To add a family, write `lrunet/families/<name>.py` that builds a frozen config dataclass, a name
grammar, a network and analytic counts, and calls `lrunet.registry.register_family` at import
(see README, "Adding a family"). Nothing else needs editing: the registry-driven tests
(`tests/test_families.py`) pick it up.
"""
