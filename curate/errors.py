"""Errors a user can act on. The CLI prints them as one clear message, never a traceback."""


class UserError(Exception):
    """Something the user can fix: a bad path, an unknown format, a missing setting."""
