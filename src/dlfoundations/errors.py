"""The one exception type a user sees: a sentence that says what is wrong and what is allowed."""

from __future__ import annotations

from typing import TypeVar

Found = TypeVar("Found", bound=BaseException)


class UserError(Exception):
    """Bad input (a config value, a data file, a checkpoint) that must stop a run before training.

    The message is one sentence naming the key or file, the value found and what is allowed;
    the command-line scripts print it without a traceback and exit with status 2.
    """


def require(condition: bool, key: str, value: object, allowed: str) -> None:
    """Unless ``condition``, raise ``UserError`` naming ``key``, ``value`` and what is allowed."""
    if not condition:
        raise UserError(f"{key}={value!r} is not allowed: {key} must be {allowed}.")


class ArgumentError(ValueError):
    """A constructor's argument out of what it allows, named as the constructor names it
    (``hidden``); code that builds from a config names the key there (``under``)."""

    def __init__(self, key: str, value: object, allowed: str) -> None:
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(self.sentence(key))

    def sentence(self, key: str) -> str:
        return f"{key}={self.value!r} is not allowed: {key} must be {self.allowed}."

    def under(self, prefix: str) -> UserError:
        """The same refusal for the config key ``prefix + key`` (e.g. ``model.net.``)."""
        return UserError(self.sentence(prefix + self.key))


def require_argument(condition: bool, key: str, value: object, allowed: str) -> None:
    """Unless ``condition``, raise ``ArgumentError`` naming the argument ``key``."""
    if not condition:
        raise ArgumentError(key, value, allowed)


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (empty when it has none)."""
    return (str(err).strip().splitlines() or [""])[0]


#: exit statuses: bad input (refused in one sentence), a run that did not complete
EXIT_BAD_INPUT, EXIT_NOT_COMPLETED = 2, 3


class CommandEnded(BaseException):
    """Ends the whole command with ``status`` (and ``message`` printed, when there is one),
    from wherever it is raised: the entry point (``dlfoundations.app.run_app``) turns it into
    the exit status. A ``BaseException``, like ``SystemExit``, because Hydra turns an
    ``Exception`` of a callback into a warning; ``sweep_dir``: a sweep that a signal stopped,
    to be summarised on the way out."""

    def __init__(self, status: int, message: str = "", sweep_dir: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.sweep_dir = status, message, sweep_dir


def refused(err: UserError) -> CommandEnded:
    """The end of a command refused before any job ran: the sentence, exit status 2."""
    return CommandEnded(EXIT_BAD_INPUT, f"error: {err}")


def found_in_causes(err: BaseException | None, kind: type[Found]) -> Found | None:
    """``err`` if it is a ``kind``, else the first ``kind`` it was raised from or while (its
    ``__cause__`` or ``__context__``, and theirs): a library that turns any exception of a call
    into its own (Hydra's ``instantiate``, Lightning's TensorBoard logger) still holds it."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, kind):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None
