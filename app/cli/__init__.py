"""The command line: the service launcher and the HTTP client."""
