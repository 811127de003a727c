"""The `batchinfer` command line."""
