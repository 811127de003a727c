"""The constructs the batchinfer stack composes, one module per part of the system."""
