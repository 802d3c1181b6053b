"""The one exception type that means "the user's input is wrong" (shown as one sentence, exit
2), and how any other failure is told in one line."""


class HastenError(Exception):
    """A problem the user can fix; its message says what is wrong and what to do."""


def describe_error(exc: BaseException) -> str:
    """A failure reason in one line: the exception's type and the first line of its message."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300] if text else ''}".rstrip(": ")
