"""espeak-ng through its library (ctypes): the CLI's audio plus timed phonemes, as ARPAbet phone segments.

The ``espeak-ng`` program prints no timings, but libespeak-ng reports every
phoneme it synthesizes when initialized with ``espeakINITIALIZE_PHONEME_EVENTS``:
an ``espeakEVENT_PHONEME`` event carrying the phoneme's mnemonic (``"aI"``,
``"t#"``, ``"_:"``) and its position in the output (``audio_position`` in ms,
``sample`` in samples; both are read and must agree). :func:`synthesize`
makes the calls the CLI makes for ``espeak-ng -v VOICE -s RATE -p PITCH [-m]
-w OUT --stdin`` (voice by name, else by language; rate and pitch; text flags
``espeakCHARS_AUTO | espeakPHONEMES | espeakENDPAUSE`` plus ``espeakSSML``
with a pitch range), at espeak's 22050 Hz.

Equality with the CLI. Every utterance is spoken by a fresh library, so its
audio depends only on (text, voice, rate, pitch, range) and equals the CLI's
sample for sample (tested: klatt, a breathy variant, SSML ranges, the first
and later utterances of a process, in any order). The library keeps state
across utterances that every ``espeak-ng`` process starts afresh: the phase
of wavegen's pitch flutter (a function-static counter, never reset) and state
inside the Klatt synthesizer; on one library, later utterances drift (the
same phonemes, lengths up to 66 ms apart over 60 sentences), and
``espeak_Terminate`` hangs in synchronous mode (1.51), so the library cannot
be restarted in-process. Hence a helper process (:class:`_Helper`; only
ctypes and numpy, no torch) loads and initializes the library once and never
synthesizes; per voice it forks a voice process that selects that voice (as
the CLI does, before rate and pitch; that takes ~7 ms in a fresh state, more
than a sentence), and that forks a child per utterance, which sets rate and
pitch, synthesizes, sends the audio and events back through a pipe and
exits. Every child thus starts from the state of a new ``espeak-ng`` process.
Each child also needs the CLI's buffer length (60 ms: the Klatt voices'
output depends on it) and libc's ``rand()`` (noise of breathy and Klatt
voices) seeded as in a new process, ``srand(1)``. Measured on short
sentences over 3 voices: 10.4 ms per utterance, against 2.6 ms in-process
(one library, drifting) and 12.5 ms for a CLI run. The helper keeps up to
32 voice processes (~2.3 MB private each; the default speakers use 27
voices), starts on the first call (~0.2 s), exits when its input closes
(``atexit``, or when this process dies), is restarted once if it dies
mid-request (a one-line ``CorpusError`` if that fails too), and reaps every
child, including voice processes killed from outside.

Timing. A phoneme runs from its event to the next one; plain text starts
speaking at sample 0 (SSML after a 5-13 ms pause), the audio ends with the
final pause. Where the event sits inside the synthesis is espeak's choice
(``Generate`` in synthesize.c): after a stop's silent closure (``prepause``),
so a stop's segment starts at its burst and the closure belongs to the
segment before; for a vowel after a nasal or liquid, after the vowel's
formant transition, so that transition belongs to the consonant. Measured on
150 comma pauses per voice: the phone after the pause starts a median 3-5 ms
from the energy onset, 90 % within 10 ms (en-gb-scotland+croak: 47 ms, weak
fricatives); within 30 ms for a nasal and a plosive (tested).

Phones. Mnemonics (not espeak's IPA names, which are empty for pauses and
for the glide ``;`` alike) map through :data:`ESPEAK_TO_PHONES` to
``text.PHONES``:

- a vowel takes the CMUdict phone of its word class in every accent, so the
  West Midlands' [ɔɪ] in "price" stays ``ay`` and Scottish ``u:`` [ʉː] ``uw``;
  a diphthong is its ARPAbet diphthong (``aI`` -> ``ay``, ``oU`` -> ``ow``);
  centring diphthongs are their nucleus (``e@`` -> ``eh``), and two-vowel
  phonemes two phones (``i@`` "serious" -> ``iy ah``, ``aI@`` -> ``ay ah``);
- r-colouring is kept only where the accent says it (:data:`RHOTIC_PHONES`,
  from espeak's own IPA for each voice): in ``en-us`` ``3`` is [ɚ] -> ``er``
  and ``A@`` is [ɑːɹ] -> ``aa r``, in British voices ``3`` is [ə] -> ``ah`` and
  ``A@`` [ɑː] -> ``aa``. A built-in r is dropped before an ``r`` phoneme (espeak
  then says the plain vowel);
- unstressed and reduced vowels are what CMUdict writes for them (``a#``,
  ``@2``, ``@5`` -> ``ah``; ``I#``, ``I2`` -> ``ih``; ``i`` -> ``iy``); syllabic
  consonants as flite's (``@L``/``n-`` -> ``l``/``n``, CMUdict ``AH0 L``); the
  flap ``t#`` and the glottal stop ``?`` -> ``t`` (as ``dx`` -> ``t``);
  Caribbean th-stopping is what espeak says (``t[`` -> ``t``, ``d``);
- pauses (``_``, ``_:``, ...) -> ``sil``, merged as ``merge_silences`` does;
  the glide ``;`` that espeak inserts after [i] before a vowel ("the end")
  extends the segment before it;
- a phoneme that maps to two phones is split into equal halves (espeak
  gives one interval); so is a phoneme espeak renders inside the vowel before
  it, as the vowel's ending, with a zero-length event: a dark l before a
  consonant or pause ("self", "all"; 10% of l) and, in en-gb-scotland, an r
  ("form"). Such a phone at the start (none seen) joins the next interval;
- espeak's events carry no stress marks; an unknown mnemonic raises
  ``CorpusError`` naming it and the voice.

Accents with a mapping (:data:`ESPEAK_ACCENTS`): espeak-ng's English voices;
a voice ``BASE+VARIANT`` uses its base's (variants change the sound, not the
phonemes).

Threads. ``synth`` runs utterances on a thread pool; one module-level lock
serializes the requests to the one helper (a request is a few milliseconds,
against the resampling and FLAC writing that stay parallel). A process
forked from this one drops the helper and starts its own when it needs one.
"""

from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import gc
import os
import pickle
import signal
import struct
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape as xml_escape

import numpy as np

from asr_introspect.errors import CorpusError, InputError
from asr_introspect.text import SILENCE

from .utterance import PhoneSegment, merge_silences

__all__ = [
    "ESPEAK_SAMPLE_RATE",
    "ESPEAK_ACCENTS",
    "ESPEAK_TO_PHONES",
    "RHOTIC_PHONES",
    "ESPEAK_PAUSES",
    "EspeakPhoneme",
    "EspeakSpeech",
    "EspeakLibrary",
    "espeak_input",
    "voice_accent",
    "has_phone_mapping",
    "require_espeak_library",
    "espeak_phone_segments",
    "synthesize",
]

#: espeak-ng's output rate (Hz); the library reports it at initialization
ESPEAK_SAMPLE_RATE = 22050
#: the Debian packages behind the library (``espeak-ng`` depends on both)
ESPEAK_LIBRARY_PACKAGES = "libespeak-ng1 espeak-ng-data"

#: espeak-ng voices (lower case, without ``+variant``) whose phonemes map to ``text.PHONES``
ESPEAK_ACCENTS = (
    "en-us",
    "en-gb-x-rp",
    "en-029",
    "en-gb-scotland",
    "en-gb-x-gbcwmd",
    "en",
    "en-gb",
    "en-gb-x-gbclan",
    "en-us-nyc",
)

#: pause mnemonics -> ``sil``
ESPEAK_PAUSES = frozenset({"_", "_:", "_::", "_!", "_|", "_;_", "||"})
#: the palatal glide espeak inserts after [i] before a vowel: extends the previous segment
_GLIDE = ";"

#: espeak-ng English phoneme mnemonic -> phones (the non-rhotic form; see RHOTIC_PHONES)
ESPEAK_TO_PHONES: dict[str, tuple[str, ...]] = {
    # consonants
    **{c: (c,) for c in ("p", "b", "t", "d", "k", "g", "f", "v", "s", "z", "m", "n", "l", "r", "w")},
    "T": ("th",), "D": ("dh",), "S": ("sh",), "Z": ("zh",), "tS": ("ch",), "dZ": ("jh",),
    "h": ("hh",), "N": ("ng",), "j": ("y",),
    "r-": ("r",),  # linking r
    "t#": ("t",),  # en-us flap
    "t2": ("t",),  # a t that is not reduced
    "?": ("t",),  # glottal stop ("didn't", "certain")
    "t[": ("t",), "d[": ("d",),  # dental stops (en-029 th-stopping)
    "w#": ("w",),  # Scottish [ʍ] "which" (CMUdict W)
    "x": ("k",),  # Scottish "loch" (CMUdict K)
    # syllabic consonants (CMUdict AH0 L / AH0 N; flite's el/en -> l/n)
    "@L": ("l",), "l-": ("l",), "m-": ("m",), "n-": ("n",), "N-": ("ng",),
    # monophthongs
    "a": ("ae",), "a2": ("ae",), "a/": ("ae",), "A#": ("ae",),
    "aa": ("ae",),  # BATH: [æ] in en-us, [ɑː] in RP; CMUdict AE
    "A:": ("aa",), "A@": ("aa",), "A~": ("aa",),
    "0": ("aa",), "0#": ("aa",), "02": ("aa",),  # LOT
    "O": ("ao",), "O:": ("ao",), "O2": ("ao",), "O@": ("ao",), "o@": ("ao",), "O~": ("ao",),
    "E": ("eh",), "E#": ("eh",), "E2": ("eh",), "e": ("eh",), "e#": ("eh",), "e@": ("eh",),
    "I": ("ih",), "I2": ("ih",), "I#": ("ih",), "I2#": ("ih",), "i@3": ("ih",),
    "i": ("iy",), "i:": ("iy",),
    "U": ("uh",), "U@": ("uh",),
    "u": ("uw",), "u:": ("uw",),
    "V": ("ah",), "@": ("ah",), "@#": ("ah",), "@-": ("ah",), "@2": ("ah",), "@5": ("ah",),
    "a#": ("ah",), "a#2": ("ah",), "3": ("ah",), "IR": ("ah",), "VR": ("ah",),
    "3:": ("er",),  # NURSE: CMUdict ER in every accent
    # diphthongs
    "aI": ("ay",), "aI2": ("ay",), "eI": ("ey",), "e:": ("ey",), "OI": ("oy",),
    "aU": ("aw",), "oU": ("ow",), "oU#": ("ow",), "o": ("ow",), "o:": ("ow",),
    # two vowels in one phoneme
    "i@": ("iy", "ah"), "aI@": ("ay", "ah"), "aI3": ("ay", "ah"), "aU@": ("aw", "ah"),
}  # fmt: skip

#: accent -> mnemonics whose r-colouring that accent pronounces (espeak's IPA ends in ɹ or is ɚ)
RHOTIC_PHONES: dict[str, dict[str, tuple[str, ...]]] = {
    "en-us": {
        "3": ("er",), "A@": ("aa", "r"), "O@": ("ao", "r"), "o@": ("ao", "r"), "e@": ("eh", "r"),
        "i@3": ("ih", "r"), "U@": ("uh", "r"), "aI3": ("ay", "er"), "aU@": ("aw", "er"),
    },
    "en-gb-scotland": {"IR": ("er",), "VR": ("er",), "U@": ("uh", "r")},
}  # fmt: skip

# speak_lib.h
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_EVENT_LIST_TERMINATED = 0
_EVENT_PHONEME = 7
_POS_CHARACTER = 1
_CHARS_AUTO, _PHONEMES, _ENDPAUSE, _SSML = 0, 0x100, 0x1000, 0x10
_RATE, _PITCH = 1, 3
_EE_OK = 0
#: callback buffer length: 0 is the CLI's (60 ms); the Klatt voices' output depends on it
_BUFFER_MS = 0
#: events one 60 ms buffer can carry (speech.c: 60 * 200 / 1000 + 20 slots, two kept free);
#: a buffer that fills them may have lost some
_EVENTS_PER_BUFFER = 30


class _Event(ctypes.Structure):
    """``espeak_EVENT``; ``name`` is the ``id`` union read as the phoneme name (8 bytes)."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("name", ctypes.c_char * 8),
    ]


class _Voice(ctypes.Structure):
    """``espeak_VOICE`` (selection by language, as the CLI falls back to)."""

    _fields_ = [
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_char_p),
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]


_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass(frozen=True)
class EspeakPhoneme:
    """One phoneme as espeak reports it: mnemonic ``name``, ``start``/``end`` in samples of its output."""

    name: str
    start: int
    end: int


@dataclass(frozen=True)
class EspeakSpeech:
    """One synthesized text: ``audio`` int16 ``(N,)`` at ``sample_rate`` (22050 Hz), espeak's
    ``phonemes`` tiling ``[0, N)``, and ``segments`` (ARPAbet phones, seconds; None when not asked for)."""

    audio: np.ndarray
    sample_rate: int
    phonemes: tuple[EspeakPhoneme, ...]
    segments: tuple[PhoneSegment, ...] | None

    @property
    def duration(self) -> float:
        """Seconds of audio."""
        return len(self.audio) / self.sample_rate


def espeak_input(text: str, pitch_range: str | None = None) -> tuple[str, bool]:
    """``(input, is_ssml)``: ``text`` as given, or with a pitch range an SSML document
    ``<speak><prosody range="RANGE">text</prosody></speak>`` (whitespace collapsed, escaped)."""
    if pitch_range is None:
        return text, False
    body = xml_escape(" ".join(text.split()))
    return f'<speak><prosody range="{pitch_range}">{body}</prosody></speak>', True


def voice_accent(voice: str) -> str | None:
    """The mapped accent of an espeak voice (``"en-us+klatt2"`` -> ``"en-us"``), None if it has none."""
    base = voice.partition("+")[0].strip().lower()
    return base if base in ESPEAK_ACCENTS else None


def has_phone_mapping(voice: str) -> bool:
    """Whether ``voice``'s phonemes map to ``text.PHONES`` (an English espeak-ng voice)."""
    return voice_accent(voice) is not None


class EspeakLibrary:
    """One loaded libespeak-ng, initialized for synchronous output with phoneme events.

    ``path``: the shared library to load (default: the system's ``libespeak-ng.so.1``).
    Every load of one file shares one state, which carries over from one utterance to the
    next: :func:`synthesize` therefore speaks in forked children of a helper process that holds
    one, never in this one (see the module docstring). Not thread-safe."""

    def __init__(self, path: str | None = None) -> None:
        self.lib = _load_library(path)
        self.libc = ctypes.CDLL(None)
        self.libc.srand.argtypes = [ctypes.c_uint]
        self.lib.espeak_Initialize.restype = ctypes.c_int
        self.lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        self.lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.lib.espeak_SetVoiceByProperties.argtypes = [ctypes.POINTER(_Voice)]
        self.lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        self.lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
            ctypes.c_void_p, ctypes.c_void_p,
        ]  # fmt: skip
        self.sample_rate = self.lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, _BUFFER_MS, None, _INITIALIZE_PHONEME_EVENTS
        )
        if self.sample_rate <= 0:
            raise InputError(f"libespeak-ng cannot start (no voice data?): apt-get install {ESPEAK_LIBRARY_PACKAGES}")
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[str, int, int]] = []
        self._error: BaseException | None = None
        self._callback = _SynthCallback(self._receive)  # referenced for as long as the library may call it
        self.lib.espeak_SetSynthCallback(self._callback)

    def _receive(self, wav, n_samples: int, events) -> int:
        try:
            if wav and n_samples > 0:
                self._chunks.append(np.ctypeslib.as_array(wav, shape=(n_samples,)).copy())
            i = 0
            while events[i].type != _EVENT_LIST_TERMINATED:
                event = events[i]
                if event.type == _EVENT_PHONEME:
                    name = event.name.decode("utf-8", errors="replace")
                    self._events.append((name, event.sample, event.audio_position))
                i += 1
            if i >= _EVENTS_PER_BUFFER:
                raise CorpusError(f"libespeak-ng filled its {i} event slots in one buffer: phonemes may be lost")
        except BaseException as exc:  # an exception cannot cross the C callback: keep it, abort synthesis
            self._error = exc
            return 1
        return 0

    def set_voice(self, voice: str) -> None:
        """Select ``voice`` by name, else by language (as the CLI does); ``InputError`` if there is none."""
        name = voice.encode("utf-8")
        if self.lib.espeak_SetVoiceByName(name) == _EE_OK:
            return
        spec = _Voice(languages=name)
        if self.lib.espeak_SetVoiceByProperties(ctypes.byref(spec)) != _EE_OK:
            raise InputError(f"espeak-ng has no voice {voice!r} (see espeak-ng --voices)")

    def speak(
        self, text: str, voice: str, rate: int, pitch: int, ssml: bool, set_voice: bool = True
    ) -> tuple[np.ndarray, list]:
        """int16 audio ``(N,)`` and the phoneme events ``(name, sample, ms)``; ``set_voice=False``: ``voice``
        is already selected."""
        if set_voice:
            self.set_voice(voice)
        self.lib.espeak_SetParameter(_RATE, int(rate), 0)
        self.lib.espeak_SetParameter(_PITCH, int(pitch), 0)
        self._chunks, self._events, self._error = [], [], None
        self.libc.srand(1)  # noise (Klatt, breath) from libc's rand(), seeded as in a new process
        data = text.encode("utf-8")
        flags = _CHARS_AUTO | _PHONEMES | _ENDPAUSE | (_SSML if ssml else 0)
        status = self.lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, flags, None, None)
        if self._error is not None:
            raise self._error
        if status != _EE_OK:
            raise CorpusError(f"espeak-ng ({voice}) failed to synthesize {text[:60]!r} (status {status})")
        audio = np.concatenate(self._chunks) if self._chunks else np.zeros(0, dtype=np.int16)
        return audio.astype(np.int16, copy=False), self._events


def _load_library(path: str | None) -> ctypes.CDLL:
    names = [path] if path is not None else ["libespeak-ng.so.1", ctypes.util.find_library("espeak-ng")]
    errors = []
    for name in filter(None, names):
        try:
            return ctypes.CDLL(name)
        except OSError as exc:
            errors.append(str(exc))
    raise InputError(
        f"libespeak-ng not found ({errors[0] if errors else 'no such library'}): "
        f"install it (apt-get install {ESPEAK_LIBRARY_PACKAGES}, or espeak-ng)"
    )


# ---------------------------------------------------------------- the helper process

_FRAME = struct.Struct("<Q")
#: what the helper runs: this module without ``asr_introspect.corpus/__init__`` (which imports torch)
_HELPER_CODE = (
    "import sys, types; corpus = types.ModuleType('asr_introspect.corpus'); corpus.__path__ = [sys.argv[1]]; "
    "sys.modules['asr_introspect.corpus'] = corpus; "
    "from asr_introspect.corpus.espeak import _serve; _serve(sys.argv[2] or None)"
)
_ERRORS = {"InputError": InputError, "CorpusError": CorpusError}


def _write_frame(stream, payload: bytes) -> None:
    stream.write(_FRAME.pack(len(payload)) + payload)
    stream.flush()


def _read_frame(stream) -> bytes | None:
    """One frame's payload; None at the end of the stream (or in the middle of a frame)."""
    head = stream.read(_FRAME.size)
    if len(head) < _FRAME.size:
        return None
    (length,) = _FRAME.unpack(head)
    payload = stream.read(length)
    return payload if len(payload) == length else None


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


#: voice processes the helper keeps (27 distinct voices among the default speakers)
_MAX_VOICES = 32


def _error_reply(kind: str, message: str) -> bytes:
    return pickle.dumps(("error", kind, message))


def _ended(status: int) -> str:
    code = os.waitstatus_to_exitcode(status)
    return f"signal {-code}" if code < 0 else f"exit code {code}"


def _speak_in_child(library: EspeakLibrary, request: tuple) -> bytes:
    """Synthesize in a forked child (its voice already set): the pickled reply."""
    try:
        audio, events = library.speak(*request, set_voice=False)
        return pickle.dumps(("ok", audio.tobytes(), events), protocol=pickle.HIGHEST_PROTOCOL)
    except BaseException as exc:  # noqa: BLE001 (sent to the client, which raises it)
        return _error_reply(type(exc).__name__ if type(exc).__name__ in _ERRORS else "CorpusError", f"{exc}")


def _fork_and_speak(library: EspeakLibrary, request: bytes) -> bytes:
    """Fork a child that speaks ``request`` once and exits; its reply (an error reply if it died)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: this process's state is the state of a new espeak-ng process
        status = 1
        try:
            os.close(read_end)
            reply = _speak_in_child(library, pickle.loads(request))
            with os.fdopen(write_end, "wb") as out:
                out.write(reply)
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    try:
        reply = _read_all(read_end)
    finally:
        os.close(read_end)
        _, status = os.waitpid(pid, 0)
    if status != 0 or not reply:
        return _error_reply("CorpusError", f"the libespeak-ng child process died ({_ended(status)})")
    return reply


def _voice_loop(library: EspeakLibrary, voice: str, requests, replies) -> None:
    """A voice process: set ``voice`` once (as the CLI does, before rate and pitch), then fork a child per
    request; setting a voice takes longer than speaking a sentence, so children skip it."""
    try:
        library.set_voice(voice)
    except InputError as exc:
        _write_frame(replies, _error_reply("InputError", str(exc)))
        return
    _write_frame(replies, pickle.dumps(("ready",)))
    gc.collect()
    gc.freeze()  # children then copy fewer pages
    while (request := _read_frame(requests)) is not None:
        _write_frame(replies, _fork_and_speak(library, request))


class _VoiceProcess:
    """The helper's side of one voice process (a child of the helper with one voice set)."""

    def __init__(self, library: EspeakLibrary, voice: str, inherited: Sequence) -> None:
        """``inherited``: the helper's streams that the voice process must not keep open."""
        request_read, request_write = os.pipe()
        reply_read, reply_write = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            status = 1
            try:
                os.close(request_write)
                os.close(reply_read)
                for stream in inherited:
                    stream.close()
                with os.fdopen(request_read, "rb") as requests, os.fdopen(reply_write, "wb") as replies:
                    _voice_loop(library, voice, requests, replies)
                status = 0
            finally:
                os._exit(status)
        os.close(request_read)
        os.close(reply_write)
        self.requests = os.fdopen(request_write, "wb")
        self.replies = os.fdopen(reply_read, "rb")
        self.status: int | None = None

    @property
    def streams(self) -> tuple:
        return self.requests, self.replies

    def ask(self, request: bytes | None) -> bytes | None:
        """Send ``request`` (None: only read) and read the reply; None if the process died."""
        try:
            if request is not None:
                _write_frame(self.requests, request)
            return _read_frame(self.replies)
        except OSError:
            return None

    def close(self) -> None:
        """End the voice process (its input closes) and reap it."""
        for stream in self.streams:
            try:
                stream.close()
            except OSError:
                pass
        if self.status is None:
            _, self.status = os.waitpid(self.pid, 0)


def _reap_voice_processes(voices: dict[str, _VoiceProcess]) -> None:
    """Reap voice processes that ended (killed from outside), so none is left a zombie."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        for voice, process in list(voices.items()):
            if process.pid == pid:
                process.status = status
                voices.pop(voice).close()


def _serve(library_path: str | None) -> None:
    """The helper's loop: requests ``(text, voice, rate, pitch, ssml)`` on stdin, replies on stdout.

    The helper initializes the library and never synthesizes; per voice it forks a voice process that
    sets that voice (up to ``_MAX_VOICES``, least recently used ended first), which forks a child per
    utterance. Every child thus starts from the state a new ``espeak-ng`` process has after selecting
    its voice (tested bit-exact against the CLI)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the client's Ctrl-C is the client's; EOF ends the helper
    requests = sys.stdin.buffer
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything the library prints goes to stderr, not into the replies
    try:
        library = EspeakLibrary(library_path)
    except InputError as exc:
        _write_frame(replies, _error_reply("InputError", str(exc)))
        return
    _write_frame(replies, pickle.dumps(("ready", library.sample_rate)))
    gc.collect()
    gc.freeze()
    voices: dict[str, _VoiceProcess] = {}
    try:
        while (request := _read_frame(requests)) is not None:
            _reap_voice_processes(voices)
            voice = pickle.loads(request)[1]
            reply = None
            for _attempt in range(2):  # a voice process that died is started again once
                process = voices.pop(voice, None)
                if process is None:
                    if len(voices) >= _MAX_VOICES:
                        voices.pop(next(iter(voices))).close()
                        gc.collect()
                    inherited = [requests, replies] + [s for p in voices.values() for s in p.streams]
                    process = _VoiceProcess(library, voice, inherited)
                    ready = process.ask(None)
                    if ready is None or pickle.loads(ready)[0] != "ready":
                        process.close()
                        reply = ready
                        break
                reply = process.ask(request)
                if reply is not None:
                    voices[voice] = process  # most recently used last
                    break
                process.close()
            if reply is None:
                reply = _error_reply(
                    "CorpusError", f"the libespeak-ng process for voice {voice} died ({_ended(process.status)})"
                )
            _write_frame(replies, reply)
    finally:
        for process in voices.values():
            process.close()


class _Helper:
    """The client side of one helper process (see the module docstring); calls must hold ``_LOCK``."""

    def __init__(self, library_path: str | None) -> None:
        package_root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])))
        corpus_dir = str(Path(__file__).resolve().parent)
        self.process = subprocess.Popen(
            [sys.executable, "-c", _HELPER_CODE, corpus_dir, library_path or ""],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        reply = self._receive()
        if reply is None:
            raise CorpusError(f"the libespeak-ng helper process exited before it was ready ({self._how()})")
        if reply[0] == "error":
            self.close()
            raise _ERRORS[reply[1]](reply[2])
        self.sample_rate: int = reply[1]

    def _receive(self):
        payload = _read_frame(self.process.stdout)
        return None if payload is None else pickle.loads(payload)

    def _how(self) -> str:
        """How the helper ended (after it closed its output)."""
        self.close()
        code = self.process.returncode
        return f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"

    def request(self, request: tuple):
        """The reply to ``request``, or None if the helper died (then reaped)."""
        try:
            _write_frame(self.process.stdin, pickle.dumps(request, protocol=pickle.HIGHEST_PROTOCOL))
            reply = self._receive()
        except (BrokenPipeError, OSError, ValueError):
            reply = None
        return reply

    def close(self) -> None:
        """Close the helper's input (it exits) and reap it; kill it if it does not exit."""
        for stream in (self.process.stdin, self.process.stdout):
            try:
                stream.close()
            except OSError:
                pass
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


_LOCK = threading.Lock()
_HELPER: _Helper | None = None
#: the shared library the helper loads (None: the system's); the tests point it elsewhere
_LIBRARY_PATH: str | None = None


def _helper() -> _Helper:
    """The running helper, started on first use; call with ``_LOCK`` held."""
    global _HELPER
    if _HELPER is None:
        _HELPER = _Helper(_LIBRARY_PATH)
    return _HELPER


def _stop_helper() -> None:
    global _HELPER
    with _LOCK:
        if _HELPER is not None:
            _HELPER.close()
            _HELPER = None


def _forget_helper_in_child() -> None:
    """In a process forked from this one: the helper's pipes belong to the parent."""
    global _HELPER, _LOCK
    _HELPER, _LOCK = None, threading.Lock()


atexit.register(_stop_helper)
os.register_at_fork(after_in_child=_forget_helper_in_child)


def require_espeak_library() -> None:
    """Start the helper, which loads and initializes libespeak-ng, or raise a one-line ``InputError``
    saying what to install."""
    with _LOCK:
        _helper()


def _speak(text: str, voice: str, rate: int, pitch: int, ssml: bool) -> tuple[np.ndarray, list, int]:
    """int16 audio, events and sample rate from a fresh library (the helper restarted once if it died)."""
    global _HELPER
    request = (text, voice, rate, pitch, ssml)
    with _LOCK:
        for _attempt in range(2):
            helper = _helper()
            reply = helper.request(request)
            if reply is not None:
                break
            how = helper._how()
            _HELPER = None
        else:
            raise CorpusError(
                f"the libespeak-ng helper process died twice ({how}) while synthesizing {text[:60]!r} (voice {voice})"
            )
    if reply[0] == "error":
        raise _ERRORS[reply[1]](reply[2])
    return np.frombuffer(reply[1], dtype=np.int16), reply[2], helper.sample_rate


def _phonemes(events: Sequence[tuple[str, int, int]], n_samples: int, rate: int, source: str) -> list[EspeakPhoneme]:
    """Events ``(name, sample, ms)`` -> phonemes tiling ``[0, n_samples)`` (a leading gap becomes ``_``)."""
    phonemes: list[EspeakPhoneme] = []
    starts = [sample for _, sample, _ in events] + [n_samples]
    if events and starts[0] > 0:
        phonemes.append(EspeakPhoneme("_", 0, starts[0]))
    for i, (name, sample, ms) in enumerate(events):
        if abs(sample * 1000.0 / rate - ms) > 1.0:
            raise CorpusError(
                f"{source}: espeak-ng phoneme {name!r} at sample {sample} but {ms} ms "
                "(libespeak-ng's event layout differs from speak_lib.h revision 12)"
            )
        if not 0 <= sample <= starts[i + 1] <= n_samples:
            raise CorpusError(f"{source}: espeak-ng phoneme {name!r} at sample {sample} is out of order")
        phonemes.append(EspeakPhoneme(name, sample, starts[i + 1]))
    return phonemes


def _phones_of(name: str, accent: str, voice: str) -> tuple[str, ...]:
    if name in ESPEAK_PAUSES:
        return (SILENCE,)
    phones = RHOTIC_PHONES.get(accent, {}).get(name) or ESPEAK_TO_PHONES.get(name)
    if phones is None:
        raise CorpusError(
            f"espeak-ng phoneme {name!r} (voice {voice}) has no ARPAbet phone: "
            "add it to asr_introspect.corpus.espeak.ESPEAK_TO_PHONES"
        )
    return phones


def espeak_phone_segments(
    phonemes: Sequence[EspeakPhoneme], voice: str, sample_rate: int = ESPEAK_SAMPLE_RATE
) -> list[PhoneSegment]:
    """ARPAbet phone segments (seconds) of espeak phonemes spoken by ``voice`` (rules in the module docstring).

    ``CorpusError`` for a voice without a mapping or a phoneme without a phone."""
    accent = voice_accent(voice)
    if accent is None:
        raise CorpusError(
            f"espeak-ng voice {voice!r} has no phone mapping (English voices only: {', '.join(ESPEAK_ACCENTS)})"
        )
    mapped = [_phones_of(p.name, accent, voice) if p.name != _GLIDE else () for p in phonemes]
    spans: list[list] = []  # [phones, start sample, end sample]
    waiting: tuple[str, ...] = ()  # zero-length phones with no phone before them
    for i, (phoneme, phones) in enumerate(zip(phonemes, mapped)):
        if not phones:  # the glide: the previous span runs on
            if not spans:
                raise CorpusError(f"espeak-ng ({voice}): the glide ';' has no phoneme before it")
            spans[-1][2] = phoneme.end
            continue
        following = next((m for m in mapped[i + 1 :] if m), ())
        if len(phones) > 1 and phones[-1] == "r" and following[:1] == ("r",):
            phones = phones[:-1]
        if phoneme.end == phoneme.start:
            if phones == (SILENCE,):
                continue
            # rendered inside the vowel before it (a post-vocalic dark l: the vowel's ending)
            if spans and spans[-1][0][-1] != SILENCE:
                spans[-1][0] += phones
            else:
                waiting += phones
            continue
        if waiting and phones != (SILENCE,):
            phones, waiting = waiting + phones, ()
        spans.append([phones, phoneme.start, phoneme.end])
    if waiting:
        if not spans:
            raise CorpusError(f"espeak-ng ({voice}): no phoneme has a duration")
        spans[-1][0] += waiting
    segments: list[PhoneSegment] = []
    for phones, start, end in spans:
        bounds = np.linspace(start, end, len(phones) + 1) / sample_rate
        segments += [PhoneSegment(p, float(a), float(b)) for p, a, b in zip(phones, bounds[:-1], bounds[1:])]
    return merge_silences(segments)


def synthesize(
    text: str,
    voice: str,
    rate: float,
    pitch: float,
    pitch_range: str | None = None,
    phones: bool = True,
) -> EspeakSpeech:
    """Speak ``text`` as ``espeak-ng -v voice -s rate -p pitch`` does (SSML ``<prosody range>`` when
    ``pitch_range`` is given), from a fresh library state: the CLI's samples whatever was spoken before;
    thread-safe (see the module docstring).

    Returns int16 audio at 22050 Hz, espeak's phonemes and, with ``phones``, ARPAbet segments
    (seconds) tiling the audio. ``InputError`` if the library or voice is missing, ``CorpusError``
    for a phoneme without a phone or a helper process that died."""
    source = f"espeak-ng {voice}"
    data, ssml = espeak_input(text, pitch_range)
    audio, events, sample_rate = _speak(data, voice, int(round(rate)), int(round(pitch)), ssml)
    if audio.size == 0:
        raise CorpusError(f"{source}: no audio for {text[:60]!r}")
    phonemes = tuple(_phonemes(events, len(audio), sample_rate, source))
    segments = tuple(espeak_phone_segments(phonemes, voice, sample_rate)) if phones else None
    return EspeakSpeech(audio, sample_rate, phonemes, segments)
