"""The one exception type for bad user input: the CLI prints it as a one-line error."""

__all__ = ["NeuralCTError"]


class NeuralCTError(Exception):
    """A problem with the user's input or files, reported without a traceback.

    The message should name the file or option, say what is wrong and what to do.
    """
