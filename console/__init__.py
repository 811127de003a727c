"""The run console: a web page per stack, its runs, predictions and models."""
