"""recomb service: HTTP API, persistence and command line."""
