"""The FastAPI producer: takes uploads, records jobs, enqueues them, serves results."""
