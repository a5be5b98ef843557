"""The machinery behind the trainers: the worker group, its processes and their session."""
