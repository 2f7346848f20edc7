"""The exception type for bad user input (the CLI prints it as a one-line error), and its kind for a broken-down run."""

__all__ = ["NeuralCTError", "RunBrokeDown", "first_line"]


class NeuralCTError(Exception):
    """A problem with the user's input or files, reported without a traceback.

    The message should name the file or option, say what is wrong and what to do.
    """


class RunBrokeDown(NeuralCTError):
    """A simulation that cannot go on: it blew up, or a biased CV turned non-finite or left its grid.

    Parameters
    ----------
    message : str
        The one-line error: what happened and what to do.
    what : str
        What happened alone, for a caller that goes on from the frames before it (``neuralct explore``).
    """

    def __init__(self, message: str, what: str):
        super().__init__(message)
        self.what = what

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        """Pickled whole: a replica's worker process hands it to the parent."""
        return type(self), (str(self), self.what)


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
