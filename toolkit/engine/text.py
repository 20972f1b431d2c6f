"""The character corpus of the ``chars`` task, and character-level tokenisation.

**Source.** The help topics that ship with CPython in the standard library
module ``pydoc_data.topics`` (what ``help("assert")`` prints: sections of *The
Python Language Reference*), as shipped with CPython 3.11.7. Python
documentation, Copyright (c) 2001-2023 Python Software Foundation, under the
PSF License Version 2 (code examples in it also under the Zero-Clause BSD
licence); the licence and notice are in ``data/chars/LICENSE``.

**Assembly** (:func:`build_corpus`, run once; the result is committed as
``data/chars/corpus.txt`` so every machine and Python version reads the same
bytes): topics in sorted key order, typographic quotes and dashes replaced by
ASCII ones, every other character outside printable ASCII and newline dropped,
runs of blank lines cut to one, and the text cut after the last topic that
fits in :data:`CORPUS_CHARS` characters. Regenerate with
``python -m toolkit.engine.text``.

**Tokens.** One token per character; a character's id is its rank in the
sorted set of characters of the whole corpus (``V`` ids). The first
:data:`TRAIN_FRACTION` of the characters are the training text, the rest the
validation text (contiguous, as nanoGPT's ``shakespeare_char``). Each text is
cut into non-overlapping windows: input ``ids[i T : (i + 1) T]``, target
``ids[i T + 1 : (i + 1) T + 1]`` (the next character at every position).
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from toolkit.paths import corpus_path

CORPUS_CHARS = 300_000
"""Upper bound on the corpus length in characters."""

CONTEXT = 64
"""Sequence length ``T`` of the ``chars`` task."""

TRAIN_FRACTION = 0.9
"""Share of the corpus (from its start) used for training."""

_ASCII = {"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2026": "...",
          "\u2014": "--", "\u2013": "-", "\t": "    "}  # fmt: skip


def build_corpus() -> str:
    """Assemble the corpus from ``pydoc_data.topics`` (see the module docstring)."""
    from pydoc_data.topics import topics

    pieces, size = [], 0
    for key in sorted(topics):
        text = "".join(_ASCII.get(c, c) for c in topics[key])
        text = "".join(c for c in text if c == "\n" or " " <= c <= "~")
        text = re.sub(r"\n{3,}", "\n\n", text).strip("\n") + "\n\n"
        if size + len(text) > CORPUS_CHARS:
            break
        pieces.append(text)
        size += len(text)
    return "".join(pieces)


def write_corpus(path: str | Path | None = None) -> Path:
    """Write :func:`build_corpus` to ``path`` (default :func:`corpus_path`)."""
    path = corpus_path() if path is None else Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(build_corpus(), encoding="ascii", newline="\n")
    return path


def read_corpus() -> str:
    """The committed corpus text."""
    path = corpus_path()
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing; rebuild it with `python -m toolkit.engine.text`"
        )
    return path.read_text(encoding="ascii")


def vocabulary(text: str) -> str:
    """The sorted distinct characters of ``text``: character ``vocab[i]`` has id ``i``."""
    return "".join(sorted(set(text)))


def encode(text: str, vocab: str) -> torch.Tensor:
    """Token ids of ``text``, shape ``(len(text),)``, int64."""
    index = {c: i for i, c in enumerate(vocab)}
    return torch.tensor([index[c] for c in text], dtype=torch.int64)


def decode(ids: torch.Tensor, vocab: str) -> str:
    """The text of token ids (any shape, read in order)."""
    return "".join(vocab[i] for i in ids.flatten().tolist())


def windows(ids: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Non-overlapping input/target windows: ``(x, y)``, each ``(len(ids) - 1) // length`` by
    ``length``, with ``y`` the next token after each position of ``x``."""
    n = (ids.numel() - 1) // length
    x = ids[: n * length].view(n, length)
    y = ids[1 : n * length + 1].view(n, length)
    return x.contiguous(), y.contiguous()


def char_splits(
    length: int = CONTEXT,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, str]:
    """``(x_train, y_train, x_val, y_val, vocab)`` of the ``chars`` task, ids int64
    ``(sequences, length)``."""
    text = read_corpus()
    vocab = vocabulary(text)
    ids = encode(text, vocab)
    cut = int(TRAIN_FRACTION * ids.numel())
    x_train, y_train = windows(ids[:cut], length)
    x_val, y_val = windows(ids[cut:], length)
    return x_train, y_train, x_val, y_val, vocab


if __name__ == "__main__":
    print(write_corpus())
