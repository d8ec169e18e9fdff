"""Errors raised for bad input: each message names the file, what was expected and what was found."""


class DatasetError(ValueError):
    """A dataset file or directory is missing, malformed or inconsistent."""
