"""Letters and phones: the CTC alphabet, transcript normalization and the phone set.

Alphabet
    ``<blank>`` (index 0), space (1), apostrophe (2), ``a``..``z`` (3..28).

Normalization (:func:`normalize_transcript`), in this order:

1. Unicode folding, per character: curly/modifier apostrophes and acute/grave
   accents used as apostrophes become ``'``; a character whose NFKD
   decomposition minus combining marks is plain ASCII is replaced by it
   (``é`` -> ``e``, ``ﬁ`` -> ``fi``, ``²`` -> ``2``); anything else (``ж``,
   ``æ``, ``ø``) is kept and later reported. Text is then case-folded
   (``ß`` -> ``ss``).
2. Numbers to words (American style, no "and"): ``1,000`` -> "one thousand";
   ``$3.50`` -> "three dollars and fifty cents" ($, £, €);
   ``21st`` -> "twenty first"; ``1990s``/``1990's`` -> "nineteen nineties";
   ``3.14`` -> "three point one four"; four-digit numbers 1100..2099 are read
   as years ("nineteen ninety nine", "nineteen oh five", "nineteen hundred"),
   except 2000..2009 ("two thousand five"); leading zeros ("007") and very long
   numbers are read digit by digit. A minus sign is not read.
3. Spoken symbols: ``%`` percent, ``&`` and, ``+`` plus, ``@`` at.
4. Punctuation (Unicode category P*, incl. hyphens, dashes, slashes, quotes)
   and modifier symbols become spaces; format characters (soft hyphen,
   zero-width space) are removed. Apostrophes survive only between two
   letters ("don't" stays, "'quoted'" loses them).
5. Whitespace is collapsed. Remaining characters outside the alphabet (other
   scripts, math or currency symbols not followed by a number, emoji) raise
   :class:`~asr_introspect.errors.TranscriptError` naming the utterance.

Phones
    :data:`PHONES`: CMUdict's 39 ARPAbet phones in lower case plus ``"sil"``.
    :data:`PHONE_CATEGORIES` holds a :class:`PhoneCategory` per phone. For
    vowels ``manner`` is ``"vowel"`` and ``place`` is the tongue position:
    ``"front"`` (iy ih eh ae), ``"central"`` (ah er), ``"back"`` (aa ao uh uw)
    or ``"diphthong"`` (ey ay oy aw ow), following the TIMIT broad classes. For
    silence both are ``"silence"``. ``w`` is labial-velar; it is filed under
    ``"bilabial"``. ``hh`` is a fricative (CMUdict calls it "aspirate").
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import InputError, TranscriptError

__all__ = [
    "BLANK_SYMBOL",
    "DEFAULT_SYMBOLS",
    "Alphabet",
    "normalize_transcript",
    "number_to_words",
    "ordinal_words",
    "PHONES",
    "SILENCE",
    "PHONE_TO_INDEX",
    "PhoneCategory",
    "PHONE_CATEGORIES",
    "MANNERS",
    "PLACES",
    "VOWEL_PLACES",
    "FLITE_TO_PHONE",
    "phone_index",
    "phone_from_flite",
    "phone_from_cmudict",
    "category_labels",
]

# --------------------------------------------------------------------------- alphabet

BLANK_SYMBOL = "<blank>"
DEFAULT_SYMBOLS: tuple[str, ...] = (BLANK_SYMBOL, " ", "'") + tuple(string.ascii_lowercase)


def _ids_to_ints(ids: Iterable[Any]) -> list[int]:
    """Plain ints from a list, NumPy array or 1-D torch tensor."""
    if hasattr(ids, "tolist"):
        ids = ids.tolist()
    out = [int(i) for i in ids]
    return out


def _outside_message(utterance_id: str | None, chars: Sequence[str], text: str) -> str:
    listed = ", ".join(repr(c) for c in chars)
    if utterance_id is not None:
        where = f"utt {utterance_id}: transcript"
    else:
        where = f"transcript {text[:60]!r}"
    return f"{where} has characters outside the alphabet: {listed} (normalize or extend the alphabet)"


#: Unicode private-use area: symbols for a foreign CTC vocabulary's special tokens
_PRIVATE_USE = (0xE000, 0xF8FF)


@dataclass(frozen=True)
class Alphabet:
    """CTC output vocabulary: ``symbols[blank]`` is the blank, every other symbol one character.

    ``Alphabet.default()`` is ``("<blank>", " ", "'", "a", ..., "z")`` with blank 0,
    space 1, apostrophe 2.
    """

    symbols: tuple[str, ...] = DEFAULT_SYMBOLS
    blank: int = 0

    def __post_init__(self) -> None:
        symbols = tuple(self.symbols)
        object.__setattr__(self, "symbols", symbols)
        if not 0 <= self.blank < len(symbols):
            raise InputError(f"alphabet: blank index {self.blank} outside 0..{len(symbols) - 1}")
        if len(set(symbols)) != len(symbols):
            dup = sorted({s for s in symbols if symbols.count(s) > 1})
            raise InputError(f"alphabet: duplicate symbols {dup} (each symbol must appear once)")
        for i, s in enumerate(symbols):
            if i != self.blank and len(s) != 1:
                raise InputError(
                    f"alphabet: symbol {s!r} at index {i} is not a single character (only the blank may be longer)"
                )
        index = {s: i for i, s in enumerate(symbols) if i != self.blank}
        object.__setattr__(self, "_index", index)

    @classmethod
    def default(cls) -> Alphabet:
        """The 29-symbol English alphabet (blank, space, apostrophe, a-z)."""
        return cls()

    def __len__(self) -> int:
        return len(self.symbols)

    @property
    def letters(self) -> tuple[str, ...]:
        """Every symbol except the blank, in index order (labels for plots)."""
        return tuple(s for i, s in enumerate(self.symbols) if i != self.blank)

    @property
    def letter_indices(self) -> tuple[int, ...]:
        """Indices of :attr:`letters` (all indices except the blank)."""
        return tuple(i for i in range(len(self.symbols)) if i != self.blank)

    @property
    def space(self) -> int | None:
        """Index of ``" "`` or None when the alphabet has no space."""
        return self._index.get(" ")  # type: ignore[attr-defined]

    def index(self, symbol: str) -> int:
        """Index of ``symbol`` (the blank by its name, e.g. ``"<blank>"``)."""
        if symbol == self.symbols[self.blank]:
            return self.blank
        try:
            return self._index[symbol]  # type: ignore[attr-defined]
        except KeyError:
            raise InputError(f"alphabet has no symbol {symbol!r}") from None

    def encode(self, text: str, utterance_id: str | None = None) -> list[int]:
        """Map each character of an already normalized ``text`` to its index.

        Raises TranscriptError naming ``utterance_id`` and the characters that
        are not in the alphabet.
        """
        index = self._index  # type: ignore[attr-defined]
        try:
            return [index[c] for c in text]
        except KeyError:
            bad = list(dict.fromkeys(c for c in text if c not in index))
            raise TranscriptError(_outside_message(utterance_id, bad, text)) from None

    def decode(self, ids: Iterable[Any]) -> str:
        """Join the symbols of ``ids`` (list, array or 1-D tensor); blanks are skipped.

        No CTC collapse: use ``decode(ctc_collapse(ids))`` for frame-wise output. Private-use
        characters (U+E000-U+F8FF) stand for a foreign vocabulary's special tokens (``<s>``,
        ``<unk>``: see ``models.huggingface.ctc_alphabet``) and are left out too.
        """
        n = len(self.symbols)
        out = []
        for i in _ids_to_ints(ids):
            if not 0 <= i < n:
                raise InputError(f"alphabet: index {i} outside 0..{n - 1}")
            if i != self.blank and not _PRIVATE_USE[0] <= ord(self.symbols[i][0]) <= _PRIVATE_USE[1]:
                out.append(self.symbols[i])
        return "".join(out)

    def ctc_collapse(self, ids: Iterable[Any]) -> list[int]:
        """Merge runs of equal ids, then drop blanks: ``[0,5,5,0,5,1,1] -> [5,5,1]``."""
        out: list[int] = []
        prev = None
        for i in _ids_to_ints(ids):
            if i != prev and i != self.blank:
                out.append(i)
            prev = i
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description: ``{"symbols": [...], "blank": 0}``."""
        return {"symbols": list(self.symbols), "blank": self.blank}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Alphabet:
        """Inverse of :meth:`to_dict`; raises InputError on a malformed dict."""
        if not isinstance(d, Mapping) or "symbols" not in d:
            raise InputError("alphabet: expected a dict with 'symbols' (and optionally 'blank')")
        symbols = d["symbols"]
        if isinstance(symbols, str) or not all(isinstance(s, str) for s in symbols):
            raise InputError("alphabet: 'symbols' must be a list of strings")
        return cls(tuple(symbols), int(d.get("blank", 0)))


# --------------------------------------------------------------------- numbers to words

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen "
    "fourteen fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ("", "thousand", "million", "billion", "trillion", "quadrillion", "quintillion")
_ORDINAL_IRREGULAR = {
    "one": "first",
    "two": "second",
    "three": "third",
    "five": "fifth",
    "eight": "eighth",
    "nine": "ninth",
    "twelve": "twelfth",
}


def _below_thousand(n: int) -> list[str]:
    words: list[str] = []
    if n >= 100:
        words += [_ONES[n // 100], "hundred"]
        n %= 100
        if n == 0:
            return words
    if n < 20:
        words.append(_ONES[n])
    else:
        words.append(_TENS[n // 10])
        if n % 10:
            words.append(_ONES[n % 10])
    return words


def _digits(s: str) -> str:
    return " ".join(_ONES[int(c)] for c in s)


def number_to_words(n: int) -> str:
    """Cardinal words for ``n >= 0``: ``1234 -> "one thousand two hundred thirty four"``.

    Numbers of 10**21 and above are read digit by digit.
    """
    if n < 0:
        raise ValueError(f"number_to_words: expected n >= 0, got {n}")
    if n == 0:
        return "zero"
    if n >= 1000 ** len(_SCALES):
        return _digits(str(n))
    groups = []
    scale = 0
    while n:
        n, rest = divmod(n, 1000)
        if rest:
            words = _below_thousand(rest)
            if _SCALES[scale]:
                words.append(_SCALES[scale])
            groups.append(words)
        scale += 1
    return " ".join(w for g in reversed(groups) for w in g)


def ordinal_words(n: int) -> str:
    """Ordinal words: ``21 -> "twenty first"``, ``12 -> "twelfth"``, ``40 -> "fortieth"``."""
    words = number_to_words(n).split()
    last = words[-1]
    if last in _ORDINAL_IRREGULAR:
        last = _ORDINAL_IRREGULAR[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return " ".join(words[:-1] + [last])


def _plural_words(words: str) -> str:
    parts = words.split()
    last = parts[-1]
    if last.endswith("y"):
        last = last[:-1] + "ies"
    elif last.endswith("x"):
        last += "es"
    else:
        last += "s"
    return " ".join(parts[:-1] + [last])


def _integer_words(s: str) -> str:
    """Words for a digit string: leading zeros digit by digit, 1100..2099 as years."""
    if len(s) > 1 and s[0] == "0":
        return _digits(s)
    n = int(s)
    if len(s) == 4 and 1100 <= n <= 2099 and not 2000 <= n <= 2009:
        hi, lo = divmod(n, 100)
        if lo == 0:
            return f"{number_to_words(hi)} hundred"
        if lo < 10:
            return f"{number_to_words(hi)} oh {_ONES[lo]}"
        return f"{number_to_words(hi)} {number_to_words(lo)}"
    return number_to_words(n)


def _decimal_words(whole: str, frac: str) -> str:
    head = _integer_words(whole) if whole else ""
    return f"{head} point {_digits(frac)}".strip()


_CURRENCY = {
    "$": ("dollar", "dollars", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
    "€": ("euro", "euros", "cent", "cents"),
}
_SCALE_WORDS = r"thousand|million|billion|trillion"

_RE_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_RE_CURRENCY = re.compile(r"([$£€])\s?(\d+)(?:\.(\d+))?(?:\s+(" + _SCALE_WORDS + r")\b)?")
_RE_ORDINAL = re.compile(r"(\d+)(?:st|nd|rd|th)\b")
_RE_DECADE = re.compile(r"(\d+)'?s\b")
_RE_DECIMAL = re.compile(r"(\d+)\.(\d+)|(?<![\w.])\.(\d+)")
_RE_INTEGER = re.compile(r"\d+")


def _currency(m: re.Match[str]) -> str:
    one, many, sub_one, sub_many = _CURRENCY[m.group(1)]
    whole, frac, scale = m.group(2), m.group(3), m.group(4)
    if scale:  # "$3.5 million" -> "three point five million dollars"
        amount = _decimal_words(whole, frac) if frac else _integer_words(whole)
        return f" {amount} {scale} {many} "
    if frac is not None and len(frac) != 2:
        return f" {_decimal_words(whole, frac)} {many} "
    units = int(whole)
    cents = int(frac) if frac else 0
    parts = []
    if units or not cents:
        parts.append(f"{number_to_words(units)} {one if units == 1 else many}")
    if cents:
        parts.append(f"{number_to_words(cents)} {sub_one if cents == 1 else sub_many}")
    return " " + " and ".join(parts) + " "


def _expand_numbers(text: str) -> str:
    text = _RE_THOUSANDS.sub("", text)
    text = _RE_CURRENCY.sub(_currency, text)
    text = _RE_ORDINAL.sub(lambda m: f" {ordinal_words(int(m.group(1)))} ", text)
    text = _RE_DECADE.sub(lambda m: f" {_plural_words(_integer_words(m.group(1)))} ", text)
    text = _RE_DECIMAL.sub(lambda m: f" {_decimal_words(m.group(1) or '', m.group(2) or m.group(3))} ", text)
    text = _RE_INTEGER.sub(lambda m: f" {_integer_words(m.group(0))} ", text)
    return text


# ---------------------------------------------------------------------- normalization

_APOSTROPHES = frozenset("'\u2019\u2018\u02bc\u02b9\u00b4\u0060\u2032\uff07")
_SYMBOL_WORDS = {"%": " percent ", "&": " and ", "+": " plus ", "@": " at "}
_RE_APOSTROPHE_EDGE = re.compile(r"(?<![a-z])'|'(?![a-z])")
_RE_SPACES = re.compile(r"\s+")


def _fold_char(c: str) -> str:
    if c in _APOSTROPHES:
        return "'"
    if c.isascii():
        return c
    base = "".join(x for x in unicodedata.normalize("NFKD", c) if not unicodedata.combining(x))
    if base and base.isascii():
        return base
    return c


def _clean_char(c: str) -> str:
    if c == "'" or c.isspace():
        return c
    if c in _SYMBOL_WORDS:
        return _SYMBOL_WORDS[c]
    cat = unicodedata.category(c)
    if cat[0] == "P" or cat == "Sk":
        return " "
    if cat == "Cf":
        return ""
    return c


def normalize_transcript(text: str, utterance_id: str | None = None, alphabet: Alphabet | None = None) -> str:
    """Normalize ``text`` for the CTC alphabet (module docstring lists the rules).

    ``"I have 2 dogs!"`` -> ``"i have two dogs"``. Raises TranscriptError naming
    ``utterance_id`` for characters that remain outside ``alphabet``
    (default: :meth:`Alphabet.default`).
    """
    if not isinstance(text, str):
        where = f"utt {utterance_id}: " if utterance_id is not None else ""
        raise TranscriptError(f"{where}transcript must be a string, got {type(text).__name__}")
    alphabet = alphabet if alphabet is not None else _DEFAULT_ALPHABET
    folded = "".join(_fold_char(c) for c in text).casefold()
    folded = _expand_numbers(folded)
    cleaned = "".join(_clean_char(c) for c in folded)
    cleaned = _RE_APOSTROPHE_EDGE.sub(" ", cleaned)
    cleaned = _RE_SPACES.sub(" ", cleaned).strip()
    allowed = alphabet._index  # type: ignore[attr-defined]
    bad = {c for c in cleaned if c not in allowed}
    if bad:
        # report the characters as written in the input, in order of appearance
        written = [c for c in text if bad & set(_fold_char(c).casefold())] or sorted(bad)
        raise TranscriptError(_outside_message(utterance_id, list(dict.fromkeys(written)), text))
    return cleaned


_DEFAULT_ALPHABET = Alphabet()

# ---------------------------------------------------------------------------- phones

SILENCE = "sil"
PHONES: tuple[str, ...] = (
    "aa", "ae", "ah", "ao", "aw", "ay", "b", "ch", "d", "dh", "eh", "er", "ey",
    "f", "g", "hh", "ih", "iy", "jh", "k", "l", "m", "n", "ng", "ow", "oy", "p",
    "r", "s", "sh", "t", "th", "uh", "uw", "v", "w", "y", "z", "zh", SILENCE,
)  # fmt: skip
PHONE_TO_INDEX: dict[str, int] = {p: i for i, p in enumerate(PHONES)}

MANNERS = ("stop", "fricative", "affricate", "nasal", "liquid", "glide", "vowel", "silence")
PLACES = (
    "bilabial", "labiodental", "dental", "alveolar", "postalveolar", "palatal", "velar", "glottal",
)  # fmt: skip
VOWEL_PLACES = ("front", "central", "back", "diphthong")


@dataclass(frozen=True)
class PhoneCategory:
    """Phonetic classes of one phone.

    vowel: True for vowels; manner: one of MANNERS; place: one of PLACES for
    consonants, VOWEL_PLACES for vowels, "silence" for silence; voiced: vocal
    folds vibrate (vowels, nasals, liquids, glides, voiced obstruents).
    """

    vowel: bool
    manner: str
    place: str
    voiced: bool


def _table() -> dict[str, PhoneCategory]:
    rows = {
        # vowels: place = tongue position (TIMIT broad classes)
        "iy": ("vowel", "front", True), "ih": ("vowel", "front", True),
        "eh": ("vowel", "front", True), "ae": ("vowel", "front", True),
        "ah": ("vowel", "central", True), "er": ("vowel", "central", True),
        "aa": ("vowel", "back", True), "ao": ("vowel", "back", True),
        "uh": ("vowel", "back", True), "uw": ("vowel", "back", True),
        "ey": ("vowel", "diphthong", True), "ay": ("vowel", "diphthong", True),
        "oy": ("vowel", "diphthong", True), "aw": ("vowel", "diphthong", True),
        "ow": ("vowel", "diphthong", True),
        # stops
        "p": ("stop", "bilabial", False), "b": ("stop", "bilabial", True),
        "t": ("stop", "alveolar", False), "d": ("stop", "alveolar", True),
        "k": ("stop", "velar", False), "g": ("stop", "velar", True),
        # fricatives
        "f": ("fricative", "labiodental", False), "v": ("fricative", "labiodental", True),
        "th": ("fricative", "dental", False), "dh": ("fricative", "dental", True),
        "s": ("fricative", "alveolar", False), "z": ("fricative", "alveolar", True),
        "sh": ("fricative", "postalveolar", False), "zh": ("fricative", "postalveolar", True),
        "hh": ("fricative", "glottal", False),
        # affricates
        "ch": ("affricate", "postalveolar", False), "jh": ("affricate", "postalveolar", True),
        # nasals
        "m": ("nasal", "bilabial", True), "n": ("nasal", "alveolar", True),
        "ng": ("nasal", "velar", True),
        # liquids and glides
        "l": ("liquid", "alveolar", True), "r": ("liquid", "alveolar", True),
        "w": ("glide", "bilabial", True), "y": ("glide", "palatal", True),
        SILENCE: ("silence", "silence", False),
    }  # fmt: skip
    return {p: PhoneCategory(m == "vowel", m, pl, v) for p, (m, pl, v) in rows.items()}


PHONE_CATEGORIES: dict[str, PhoneCategory] = _table()

#: flite's US English phone set (cmu_us_* voices, cmulex) -> PHONES. Reductions
#: follow CMUdict: ax -> ah, axr -> er, syllabic el/em/en -> l/m/n, the flap dx
#: -> t and nasal flap nx -> n (CMUdict spells flaps that way), hv -> hh; pauses,
#: utterance edges and breaths -> sil.
FLITE_TO_PHONE: dict[str, str] = {
    **{p: p for p in PHONES if p != SILENCE},
    "ax": "ah",
    "axr": "er",
    "el": "l",
    "em": "m",
    "en": "n",
    "dx": "t",
    "nx": "n",
    "hv": "hh",
    "pau": SILENCE,
    "h#": SILENCE,
    "brth": SILENCE,
    "sil": SILENCE,
}

_RE_STRESS = re.compile(r"[012]$")


def phone_index(phone: str) -> int:
    """Index of ``phone`` in :data:`PHONES`; InputError for an unknown name."""
    try:
        return PHONE_TO_INDEX[phone]
    except KeyError:
        raise InputError(
            f"unknown phone {phone!r} (expected one of PHONES; convert flite/CMUdict names "
            "with phone_from_flite/phone_from_cmudict)"
        ) from None


def phone_from_flite(name: str) -> str:
    """Map a flite phone name (``"pau"``, ``"ax"``, ``"hh"``) to a PHONES name."""
    try:
        return FLITE_TO_PHONE[name.strip().lower()]
    except (KeyError, AttributeError):
        raise InputError(f"unknown flite phone name {name!r} (add it to asr_introspect.text.FLITE_TO_PHONE)") from None


def phone_from_cmudict(symbol: str) -> str:
    """Map a CMUdict symbol with optional stress (``"AH0"``) to a PHONES name (``"ah"``)."""
    phone = _RE_STRESS.sub("", symbol.strip()).lower() if isinstance(symbol, str) else None
    if phone is None or phone == SILENCE or phone not in PHONE_TO_INDEX:
        raise InputError(f"unknown CMUdict phone symbol {symbol!r} (expected e.g. 'AH0', 'K')")
    return phone


def category_labels(phones: Iterable[str], kind: str = "manner") -> list[str]:
    """One class label per phone.

    kind: "manner" (MANNERS), "place" (PLACES/VOWEL_PLACES/"silence"),
    "vowel" ("vowel", "consonant" or "silence"), or "voicing" ("voiced",
    "voiceless", "silence").
    """
    if kind not in ("manner", "place", "vowel", "voicing"):
        raise InputError(f"category_labels: unknown kind {kind!r} (use 'manner', 'place', 'vowel' or 'voicing')")
    out = []
    for p in phones:
        cat = PHONE_CATEGORIES[PHONES[phone_index(p)]]
        if kind == "manner":
            out.append(cat.manner)
        elif kind == "place":
            out.append(cat.place)
        elif cat.manner == "silence":
            out.append("silence")
        elif kind == "vowel":
            out.append("vowel" if cat.vowel else "consonant")
        else:
            out.append("voiced" if cat.voiced else "voiceless")
    return out
