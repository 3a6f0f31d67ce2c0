"""The one exception type that the CLI turns into a single readable line."""


class LsmapError(Exception):
    """Bad input or a failed precondition; the message names the file and the problem.

    The CLI prints it as one line (``lsmap: error: <message>``) and exits with status 2,
    so messages must be one line and must name the offending path where there is one.
    """
