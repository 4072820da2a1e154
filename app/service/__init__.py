"""The persistence service: database, queue, artifact store and the rules that write job rows."""
