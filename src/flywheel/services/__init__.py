"""Use cases over the ports: the API, the worker and the CLI are thin front ends over these."""
