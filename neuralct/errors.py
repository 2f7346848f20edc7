"""The one exception type for bad user input: the CLI prints it as a one-line error."""

__all__ = ["NeuralCTError", "first_line"]


class NeuralCTError(Exception):
    """A problem with the user's input or files, reported without a traceback.

    The message should name the file or option, say what is wrong and what to do.
    """


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
