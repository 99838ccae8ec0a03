"""The one exception type users see: a problem with their input, options or files."""


class MedsslError(Exception):
    """Bad input, options or files; the CLI prints the message on one line and exits 2."""
