"""The one exception type that means "the user's input is wrong": shown as one sentence, exit 2."""


class HastenError(Exception):
    """A problem the user can fix; its message says what is wrong and what to do."""
