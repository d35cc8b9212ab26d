"""The one exception users see: a one-line message naming the thing at fault and the fix; and the one warning."""


class AirsceneError(Exception):
    """Bad input or settings; the CLI prints the message alone and exits non-zero."""


class AirsceneWarning(UserWarning):
    """Something airscene did otherwise than asked, and why (a --compile that runs eagerly); the CLI prints it
    in one line."""


def last_line(error: BaseException, width: int = 200) -> str:
    """The last line of an exception's message (where torch says what went wrong), cut to `width` characters."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return (lines[-1] if lines else type(error).__name__)[:width]
