"""The state machine definition, the embedded engine that runs it locally, the demo and the CLI."""
