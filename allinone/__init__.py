"""The all-in-one process (API + in-process worker): run it with ``python -m allinone``."""
