"""Performance benchmark of batchinfer: throughput, cold start, memory and cost, in one run."""
