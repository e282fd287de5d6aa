"""Exceptions whose message is meant for the user as it is: one line per problem, no traceback needed."""


class FlakesegError(Exception):
    """Base class for errors that the command line reports without a traceback."""


class DataError(FlakesegError):
    """The data set is missing, unreadable or inconsistent.

    Each line of the message names one file and its problem (``path: problem``).
    """

    def __init__(self, problems: list[str] | str):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class ConfigError(FlakesegError):
    """A configuration value is wrong; the message names the key (``key: problem``)."""


class NonFiniteError(FlakesegError):
    """The loss or the weights stopped being finite; the message says where."""


class Interrupted(Exception):
    """Training was stopped by SIGTERM; a checkpoint of the state at the stop was written."""


class UsageError(FlakesegError):
    """Options that cannot work together with this model or these inputs, found only once they are read
    (the command line answers it as a usage mistake: one line, exit status 2); the message names the
    option."""
