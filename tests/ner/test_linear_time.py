"""Policies and sentence splitting scale linearly: a 100,000-token CoNLL sentence in seconds.

Before the fix, a 100k-token sentence took 18 s (10k entities) to 60 s in ``apply_policies``
and 17 s to 43 s in ``split_documents``: each entity was compared with every kept one, each
sentence with every entity. The bounds below are generous (a 10x larger input may take up to
40x longer, where quadratic code takes 100x; 100k tokens under 10 s, where the old code took
over 60 s on this input), and they cannot be made to fail by a busy machine: the time is this
process's CPU time (not the wall clock other processes share), the best of a few runs, with the
garbage collector paused while measuring (its full passes come at times that depend on the whole
heap, not on the step measured).
"""

from __future__ import annotations

import gc
import time

from medkit_exp.ner.formats import read_conll
from medkit_exp.ner.policies import apply_policies
from medkit_exp.ner.splitting import split_documents


def _sentence_file(tmp_path, tokens: int):
    # One sentence: an entity every 5 tokens, nested-free; a "." then a capital every 10 tokens,
    # so that split_documents finds tokens/10 sentences in it.
    lines = []
    for index in range(tokens):
        k = index % 10
        token, tag = {0: ("Fever", "B-Disease"), 1: ("cough", "I-Disease"), 5: ("rash", "B-Disease"),
                      8: (".", "O"), 9: ("Word", "O")}.get(k, ("word", "O"))
        lines.append(f"{token}\t{tag}\n")
    path = tmp_path / f"sentence-{tokens}.tsv"
    path.write_text("".join(lines))
    return read_conll(path)


def _best_time(function, runs: int = 2) -> float:
    best = float("inf")
    for _ in range(runs):
        gc.collect()
        gc.disable()
        try:
            start = time.process_time()
            function()
            best = min(best, time.process_time() - start)
        finally:
            gc.enable()
    return best


def test_policies_and_splitting_are_linear_on_a_100k_token_sentence(tmp_path):
    small, large = _sentence_file(tmp_path, 10_000), _sentence_file(tmp_path, 100_000)
    assert len(large) == 1 and len(large[0].entities) == 20_000
    for step in (
        lambda corpus: apply_policies(corpus, labels=["Disease"]),
        lambda corpus: apply_policies(corpus, labels=["Disease"], overlaps="keep_first"),
        lambda corpus: split_documents(corpus),
    ):
        small_time = max(_best_time(lambda: step(small), runs=3), 1e-3)
        large_time = _best_time(lambda: step(large), runs=2)
        assert large_time < 10.0, f"{large_time:.1f} s for 100k tokens"
        assert large_time < 40 * small_time, f"10x the tokens took {large_time / small_time:.0f}x the time"
    documents, report = apply_policies(large, labels=["Disease"])
    subs, split_report = split_documents(documents)
    assert report.entities_out == 20_000 and split_report.sub_documents == 10_001
    assert sum(len(sub.entities) for sub in subs) == 20_000


def test_linear_overlap_resolution_keeps_what_the_pairwise_one_kept():
    from medkit_exp.ner.documents import Entity, TextDocument
    from medkit_exp.ner.policies import PolicyReport, resolve_overlaps

    # Nested, crossing, discontinuous and identical entities: the same choices as comparing pairs.
    entities = [
        Entity("A", [(0, 10)]), Entity("B", [(2, 4)]), Entity("C", [(8, 14)]), Entity("D", [(12, 13), (20, 22)]),
        Entity("E", [(14, 18)]), Entity("F", [(14, 18)]), Entity("G", [(16, 30)]), Entity("H", [(30, 31)]),
    ]
    doc = TextDocument("x" * 40, entities, doc_id="d")
    longest = resolve_overlaps(doc, "keep_longest", PolicyReport())
    first = resolve_overlaps(doc, "keep_first", PolicyReport())
    assert [e.label for e in longest] == ["A", "G", "H"]  # G (14 chars) before E (4), E then clashes
    assert [e.label for e in first] == ["A", "D", "E", "H"]


def test_spans_to_tags_is_linear_when_entities_nest_deeply():
    from medkit_exp.ner.documents import Entity
    from medkit_exp.ner.tagging import TaggingReport, spans_to_tags

    # 20,000 entities nested around 100,000 words: each clash test used to copy the words it
    # covers (2x10^9 copies, 9 s); it is now a search that stops at the first tagged word.
    words = [(2 * i, 2 * i + 1) for i in range(100_000)]
    entities = [Entity("X", [(2 * i, 200_000 - 2 * i - 1)]) for i in range(20_000)]
    report = TaggingReport()
    start = time.process_time()
    tags = spans_to_tags(words, entities, "iob2", report)
    assert time.process_time() - start < 3.0
    assert report.tagged == 1 and report.overlapping_dropped == 19_999 and tags[0] == "B-X" and tags[-1] == "I-X"
