"""Windows, word ownership and sub-token tags (medkit_exp.ner.encoding), incl. randomized cases.

The randomized cases draw documents (sub-tokens per word), window sizes and strides from
``random.Random(seed)`` with explicit seeds, so every failure replays exactly.
"""

from __future__ import annotations

import random

import pytest

from medkit_exp.ner.encoding import assign_owners, split_windows, subtoken_tags
from medkit_exp.ner.tagging import chunks_to_tags, find_tag_errors, tags_to_chunks

SEEDS = range(40)


def word_ids_of(sizes: list[int]) -> list[int]:
    """Sub-token -> word index, for words of ``sizes`` sub-tokens."""
    return [word for word, size in enumerate(sizes) for _ in range(size)]


def first_subtokens(word_ids: list[int]) -> set[int]:
    return {p for p in range(len(word_ids)) if p == 0 or word_ids[p - 1] != word_ids[p]}


def random_document(rng: random.Random) -> tuple[list[int], int, int]:
    """(word ids, max_tokens, stride) with every word shorter than a window."""
    max_tokens = rng.randint(4, 24)
    stride = rng.randint(0, max_tokens - 1)
    sizes = [rng.choice([1, 1, 1, 2, 3, min(4, max_tokens)]) for _ in range(rng.randint(1, 80))]
    return word_ids_of(sizes), max_tokens, stride


def check_windows(word_ids: list[int], nb_words: int, max_tokens: int, stride: int) -> list[range]:
    windows = split_windows(word_ids, nb_words, max_tokens, stride)
    total = len(word_ids)
    firsts = first_subtokens(word_ids)
    assert windows[0].start == 0 and windows[-1].stop == total
    for window in windows:
        assert 0 < len(window) <= max_tokens, (window, max_tokens)
        assert window.start in firsts, f"{window} starts inside a word"
        # no word is cut in two: the window ends at a word boundary (or the document's end)
        assert window.stop == total or window.stop in firsts, f"{window} cuts a word"
    for before, after in zip(windows, windows[1:]):
        assert before.start < after.start and before.stop < after.stop
        assert after.start <= before.stop, "a gap between windows: some sub-tokens are never seen"
    return windows


def check_owners(windows: list[range], word_ids: list[int], nb_words: int) -> list[range]:
    owned = assign_owners(windows, word_ids, nb_words)
    assert len(owned) == len(windows)
    counts = [0] * nb_words
    for window, words in zip(windows, owned):
        for word in words:
            counts[word] += 1
            first = word_ids.index(word)
            assert first in window, f"word {word} owned by {window}, which misses its first sub-token"
    assert counts == [1] * nb_words, "every word must be owned by exactly one window"
    return owned


# ------------------------------------------------------------------ split_windows / assign_owners
def test_documented_example():
    word_ids = [0, 0, 1, 2, 2, 3, 4, 5]
    windows = split_windows(word_ids, 6, max_tokens=4, stride=1)
    assert windows == [range(0, 3), range(2, 6), range(5, 8)]
    # word 1 sits on the edge of both of its windows (margin 0 in each): the first one wins the tie
    assert assign_owners(windows, word_ids, 6) == [range(0, 2), range(2, 4), range(4, 6)]


def test_short_document_is_one_window():
    word_ids = word_ids_of([2, 1, 3])
    assert split_windows(word_ids, 3, max_tokens=6, stride=2) == [range(0, 6)]
    assert assign_owners([range(0, 6)], word_ids, 3) == [range(0, 3)]


def test_bad_stride_is_rejected():
    with pytest.raises(ValueError, match="stride"):
        split_windows(list(range(10)), 10, max_tokens=4, stride=4)


@pytest.mark.parametrize("block", range(10))
def test_random_windows_and_owners(block):
    for seed in range(50 * block, 50 * (block + 1)):  # 500 random documents in all
        rng = random.Random(seed)
        word_ids, max_tokens, stride = random_document(rng)
        nb_words = word_ids[-1] + 1
        try:
            windows = check_windows(word_ids, nb_words, max_tokens, stride)
            check_owners(windows, word_ids, nb_words)
            longest_word = max(word_ids.count(w) for w in range(nb_words))
            for before, after in zip(windows, windows[1:]):
                overlap = before.stop - after.start
                # about `stride`: at most one word more (windows move back to a word's first sub-token)
                assert 0 <= overlap <= stride + longest_word - 1, (overlap, stride, longest_word)
                # Some context is shared whenever it can be: the window holds two words or more,
                # and its last word can open a window that also holds the next word.
                last_word_start = max(p for p in first_subtokens(word_ids) if p < before.stop)
                next_word_size = word_ids.count(word_ids[before.stop])
                if stride and last_word_start > before.start and last_word_start + max_tokens >= before.stop + next_word_size:
                    assert overlap >= 1, (before, after)
        except AssertionError as error:
            raise AssertionError(f"seed {seed} (max_tokens={max_tokens}, stride={stride}): {error}") from error


@pytest.mark.parametrize("seed", SEEDS[:10])
def test_one_subtoken_words_overlap_exactly_stride(seed):
    rng = random.Random(1000 + seed)
    max_tokens = rng.randint(3, 20)
    stride = rng.randint(0, max_tokens - 1)
    nb_words = rng.randint(max_tokens + 1, 120)
    word_ids = list(range(nb_words))
    windows = check_windows(word_ids, nb_words, max_tokens, stride)
    assert len(windows) > 1
    for before, after in zip(windows, windows[1:]):
        assert before.stop - after.start == stride
    for window in windows[:-1]:
        assert len(window) == max_tokens  # full windows: no sub-token budget wasted


@pytest.mark.parametrize("seed", SEEDS[:10])
def test_owner_is_the_most_central_window(seed):
    rng = random.Random(2000 + seed)
    word_ids, max_tokens, stride = random_document(rng)
    nb_words = word_ids[-1] + 1
    windows = split_windows(word_ids, nb_words, max_tokens, stride)
    owned = assign_owners(windows, word_ids, nb_words)

    def margin(window: range, position: int) -> int:
        return min(position - window.start, window.stop - 1 - position)

    for index, words in enumerate(owned):
        for word in words:
            first = word_ids.index(word)
            best = max(margin(w, first) for w in windows if first in w)
            assert margin(windows[index], first) == best


def test_word_longer_than_a_window_is_still_owned():
    # One word of 9 sub-tokens in windows of 4: it must be cut, yet every word keeps one owner.
    word_ids = word_ids_of([1, 9, 1, 2])
    windows = split_windows(word_ids, 4, max_tokens=4, stride=1)
    assert all(len(w) <= 4 for w in windows) and windows[-1].stop == len(word_ids)
    check_owners(windows, word_ids, 4)


# ------------------------------------------------------------------ subtoken_tags
@pytest.mark.parametrize("scheme", ["iob2", "bilou"])
@pytest.mark.parametrize("size", [1, 2, 3, 4])
def test_subtoken_tags_of_one_word(scheme, size):
    prefixes = "BI" if scheme == "iob2" else "BILU"
    for prefix in [*prefixes, "O"]:
        tag = "O" if prefix == "O" else f"{prefix}-DISO"
        tags = subtoken_tags(tag, size, scheme)
        assert len(tags) == size
        assert tags[0] == tag or (scheme == "bilou" and tag[0] in "LU" and size > 1)
        assert all(t == "O" for t in tags) if tag == "O" else all(t.endswith("-DISO") for t in tags)
    assert subtoken_tags("U-DISO", size, "bilou") == (
        ["U-DISO"] if size == 1 else ["B-DISO", *["I-DISO"] * (size - 2), "L-DISO"]
    )


@pytest.mark.parametrize("scheme", ["iob2", "bilou"])
@pytest.mark.parametrize("seed", SEEDS[:15])
def test_subtoken_tags_keep_random_sequences_valid(scheme, seed):
    """Expanding every word of a valid word-level sequence gives a valid sub-token sequence
    that decodes to the same entities (mapped to sub-token positions)."""
    rng = random.Random(3000 + seed)
    nb_words = rng.randint(1, 30)
    chunks, position = [], 0
    while position < nb_words:
        if rng.random() < 0.4:
            length = rng.randint(1, min(4, nb_words - position))
            chunks.append((rng.choice(["A", "B"]), position, position + length))
            position += length
        else:
            position += 1
    word_tags = chunks_to_tags(chunks, nb_words, scheme)
    sizes = [rng.randint(1, 4) for _ in range(nb_words)]
    starts = [sum(sizes[:i]) for i in range(nb_words + 1)]
    sub_tags = [tag for word_tag, size in zip(word_tags, sizes) for tag in subtoken_tags(word_tag, size, scheme)]
    assert len(sub_tags) == starts[-1]
    assert find_tag_errors(sub_tags, scheme) == []
    expected = [(label, starts[first], starts[end]) for label, first, end in chunks]
    assert tags_to_chunks(sub_tags, scheme) == expected
