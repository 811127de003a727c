"""The digits demo: a small model trained on bundled data, scored through the whole system."""
