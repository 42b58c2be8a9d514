"""From words to model inputs: sub-token alignment of word tags and sliding windows.

A document is tokenised into words once (``tagging.tokenize_words``); the tokenizer splits each
word into sub-tokens. Tags are decided per word and then aligned: the first sub-token of a word
carries the word's tag; the others carry -100 (ignored) or, with ``tag_subtokens``, the tag that
keeps the scheme valid (``U-X`` over three sub-tokens becomes ``B-X I-X L-X``).

A document longer than the model's limit is cut into windows of at most ``max_tokens``
sub-tokens, each starting on a word, consecutive windows overlapping by about ``stride``
sub-tokens. Each word is *owned* by exactly one window, the one where it is furthest from an
edge; that window alone scores (training metrics) and predicts (inference) the word.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

IGNORE_INDEX = -100


@dataclass
class Window:
    """One model input: sub-token ids (without special tokens) and their words."""

    input_ids: list[int]
    word_ids: list[int]  # document word index of each sub-token
    owned_words: range  # the words this window scores and predicts


def split_windows(word_ids: Sequence[int], nb_words: int, max_tokens: int, stride: int) -> list[range]:
    """Sub-token ranges of the windows of a document; every range starts on a word's first sub-token.

    >>> split_windows([0, 0, 1, 2, 2, 3, 4, 5], 6, max_tokens=4, stride=1)
    [range(0, 3), range(2, 6), range(5, 8)]
    """
    total = len(word_ids)
    if total <= max_tokens:
        return [range(0, total)]
    if not 0 <= stride < max_tokens:
        raise ValueError(f"stride must be in [0, {max_tokens}), got {stride}")
    windows, start = [], 0
    while True:
        end = min(start + max_tokens, total)
        if end < total:  # do not cut a word in two, when the window holds more than that word
            cut = end
            while cut > start and word_ids[cut] == word_ids[cut - 1]:
                cut -= 1
            end = cut if cut > start else end
        windows.append(range(start, end))
        if end >= total:
            return windows
        start = _next_start(word_ids, start, end, max_tokens, stride)


def _next_start(word_ids: Sequence[int], start: int, end: int, max_tokens: int, stride: int) -> int:
    """Where the window after ``[start, end)`` starts: on a word, about ``stride`` before ``end``."""

    def inside_word(position: int) -> bool:
        return word_ids[position] == word_ids[position - 1]

    target = max(end - stride, start + 1)
    following = target
    while following > start and following < end and inside_word(following):
        following -= 1  # back to the first sub-token of the word
    if following <= start:  # that word opens this window: start on the next word instead
        following = target
        while following < end and inside_word(following):
            following += 1
    # The next window must hold the word at `end`, or its cut would end it where this one
    # ends: a window inside this one, computed for nothing. Start later (on a word) if needed.
    next_word_end = end
    while next_word_end < len(word_ids) and word_ids[next_word_end] == word_ids[end]:
        next_word_end += 1
    while following < end and following + max_tokens < next_word_end:
        following += 1
        while following < end and inside_word(following):
            following += 1
    return following


def assign_owners(windows: list[range], word_ids: Sequence[int], nb_words: int) -> list[range]:
    """The words each window owns: a word goes to the window where its first sub-token is most central."""
    owner = [-1] * nb_words
    best_margin = [-1] * nb_words
    for index, window in enumerate(windows):
        for position in window:
            word = word_ids[position]
            if position > 0 and word_ids[position - 1] == word:
                continue  # not the first sub-token
            margin = min(position - window.start, window.stop - 1 - position)
            if margin > best_margin[word]:
                best_margin[word], owner[word] = margin, index
    owned = []
    for index in range(len(windows)):
        words = [w for w in range(nb_words) if owner[w] == index]
        owned.append(range(words[0], words[-1] + 1) if words else range(0, 0))
    return owned


def subtoken_tags(word_tag: str, nb_subtokens: int, scheme: str) -> list[str]:
    """The tags of a word's sub-tokens when every sub-token is tagged, keeping the scheme valid.

    >>> subtoken_tags("U-DISO", 3, "bilou")
    ['B-DISO', 'I-DISO', 'L-DISO']
    >>> subtoken_tags("B-DISO", 2, "iob2")
    ['B-DISO', 'I-DISO']
    """
    if word_tag == "O" or nb_subtokens == 1:
        return [word_tag] * nb_subtokens
    prefix, label = word_tag.split("-", 1)
    inside = [f"I-{label}"] * (nb_subtokens - 2)
    if scheme == "bilou":
        first = {"U": "B", "B": "B", "I": "I", "L": "I"}[prefix]
        last = {"U": "L", "B": "I", "I": "I", "L": "L"}[prefix]
        return [f"{first}-{label}", *inside, f"{last}-{label}"]
    return [word_tag, *inside, f"I-{label}"]
