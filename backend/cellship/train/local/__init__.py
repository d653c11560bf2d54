"""The embedded local backend: every replica a process on this machine, on loopback ports.

- :mod:`.backend`    LocalBackend: starts the supervisor, follows its replicas' logs
- :mod:`.supervisor` the detached process that runs the replicas, restarts, records states
"""
