"""The one exception users see: a one-line message naming the thing at fault and the fix."""


class AirsceneError(Exception):
    """Bad input or settings; the CLI prints the message alone and exits non-zero."""
