"""The one exception type that the CLI turns into a single line and a non-zero exit."""


class LstmgenError(Exception):
    """An expected failure caused by the user's input.

    The message must say what is wrong *and* what to do about it. The CLI prints
    it as one line without a traceback; unexpected exceptions keep theirs.
    """


class TrainingInterrupted(LstmgenError):
    """SIGINT or SIGTERM arrived; the run was checkpointed and can be resumed."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum
