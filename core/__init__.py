"""Shared foundation: settings, errors, the job model and the storage backends."""
