"""batchinfer's Lambda code: settings, records, stores and the domain steps of a run."""
