"""The ClassifyBatch container function: TensorFlow inference over a batch of image versions."""
