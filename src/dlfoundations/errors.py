"""The one exception type a user sees: a sentence that says what is wrong and what is allowed."""


class UserError(Exception):
    """Bad input (a config value, a data file, a checkpoint) that must stop a run before training.

    The message is one sentence naming the key or file, the value found and what is allowed;
    the command-line scripts print it without a traceback and exit with status 2.
    """


def require(condition: bool, key: str, value: object, allowed: str) -> None:
    """Unless ``condition``, raise ``UserError`` naming ``key``, ``value`` and what is allowed."""
    if not condition:
        raise UserError(f"{key}={value!r} is not allowed: {key} must be {allowed}.")


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (empty when it has none)."""
    return (str(err).strip().splitlines() or [""])[0]
