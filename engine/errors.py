"""One exception type for problems the user can fix; its message is shown as is, never a traceback."""


class UserError(ValueError):
    """Bad input or an impossible request. The message says what is wrong and how to fix it."""
