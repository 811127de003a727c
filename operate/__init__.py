"""Operating runs on a stack, local or deployed: start, list, show, replay, predictions, models."""
