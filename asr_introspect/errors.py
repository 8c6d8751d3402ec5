"""Exceptions shared by the whole package.

Every error caused by the user's input (a file, an utterance, a flag) derives
from :class:`InputError`; the command line turns it into exit code 2 and a
one-line reason on stderr. Messages name the file or utterance and say what to
do, e.g. ``utt 84-121123-0001: transcript has characters outside the alphabet:
'é' (normalize or extend the alphabet)``.
"""


class InputError(ValueError):
    """Bad input from the user: the message names the file/utterance and the fix."""


class AudioError(InputError):
    """An audio file cannot be used (unreadable, empty, NaN/inf, too short)."""


class TranscriptError(InputError):
    """A transcript cannot be encoded with the alphabet."""


class CorpusError(InputError):
    """A corpus directory, manifest or alignment file is malformed."""


class CheckpointError(InputError):
    """A checkpoint file is missing, truncated, altered or does not match."""


class AlignmentError(InputError):
    """A transcript cannot be aligned to an utterance's frames."""
