"""The embedded engine: the real definition on moto, with the real handlers behind a Lambda bridge."""
