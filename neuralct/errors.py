"""The exception type for bad user input (the CLI prints it as a one-line error), and its kind for a broken-down run."""

from __future__ import annotations

__all__ = ["NeuralCTError", "RunBrokeDown", "TemperatureMismatch", "first_line"]


class NeuralCTError(Exception):
    """A problem with the user's input or files, reported without a traceback.

    The message should name the file or option, say what is wrong and what to do.

    Parameters
    ----------
    what : str
        What is wrong; the whole message where no ``advice`` is given apart.
    advice : str, optional
        What to do. The message is ``"{what}; {advice}"``; a caller that cannot take this advice (an
        option it has not) reads ``what`` alone.
    """

    def __init__(self, what: str, advice: str | None = None):
        super().__init__(what if advice is None else f"{what}; {advice}")
        self.what = what
        self.advice = advice

    def __reduce__(self) -> tuple[type, tuple[str, str | None]]:
        """Pickled whole: a replica's worker process hands it to the parent."""
        return type(self), (self.what, self.advice)


class RunBrokeDown(NeuralCTError):
    """A simulation that cannot go on: it blew up, or a biased CV turned non-finite or left its grid.

    ``what`` says what happened, for a caller that goes on from the frames before it (``neuralct explore``).
    """


class TemperatureMismatch(NeuralCTError):
    """Trajectories whose files record another temperature than the one given.

    ``what`` names the file and both temperatures; a caller whose option for the temperature is
    another (``neuralct explore``'s round 0) gives its own advice.
    """


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
