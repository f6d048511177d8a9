"""Retrieval: corpus files, BM25 with its on-disk index, embeddings against the loopback server
(tests/lm_server.py), and the Retrieve module. Real files, real bm25s, real HTTP; no mocks."""

from __future__ import annotations

import asyncio
import json
import re
import socket
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest

from dspx_cli.core import Prediction
from dspx_cli.errors import EXIT_RUNTIME, EXIT_USAGE
from dspx_cli.lm.history import History
from dspx_cli.lm.usage import UsageMeter
from dspx_cli.modules.retrieve import Retrieve
from dspx_cli.retrieval import (
    BM25Retriever,
    Corpus,
    CorpusError,
    EmbeddingsRetriever,
    Passage,
    RetrievalError,
    Retriever,
    load_corpus,
    plural_stem,
)
from tests.cli_inprocess import dspx
from tests.lm_server import LMServer, RecordedRequest, Reply, error_body

T = TypeVar("T")
SECRET = "sk-embed-0123456789abcdef-SECRET"
RAG = Path(__file__).resolve().parent.parent / "datasets" / "rag"

FACTS = [
    {"id": "paris", "title": "Paris", "text": "Paris is the capital of France and home to the Eiffel Tower."},
    {"id": "tokyo", "title": "Tokyo", "text": "Tokyo is the capital of Japan and its largest city."},
    {"id": "everest", "title": "Mount Everest", "text": "Mount Everest is the highest mountain on Earth."},
    {"id": "whale", "title": "Blue whale", "text": "The blue whale is the largest animal that has ever lived."},
    {"id": "penicillin", "title": "Penicillin", "text": "Alexander Fleming discovered penicillin in 1928."},
    {"id": "nile", "title": "Nile", "text": "The Nile is a long river that flows north into the Mediterranean Sea."},
]


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


async def search(retriever: Retriever, query: str, k: int = 3) -> list[Passage]:
    try:
        return await retriever.search(query, k)
    finally:
        await retriever.aclose()


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.fixture
def facts(tmp_path: Path) -> Corpus:
    return load_corpus(write_jsonl(tmp_path / "facts.jsonl", FACTS))


@pytest.fixture(autouse=True)
def _no_ambient_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


# -- corpus files -----------------------------------------------------------------------------


def test_jsonl_passages_read_title_then_text_and_keep_ids_and_metadata(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "c.jsonl",
        [
            {"id": 7, "title": "Tokyo", "text": "Tokyo is the capital of Japan.", "year": 2024},
            {"text": "No title here."},
            {"id": "x", "title": "  ", "text": "A blank title is no title.", "title_note": None},
        ],
    )
    corpus = load_corpus(path)
    assert corpus.texts == ["Tokyo | Tokyo is the capital of Japan.", "No title here.", "A blank title is no title."]
    first = corpus.passages[0]
    assert (first.index, first.id, dict(first.metadata)) == (0, 7, {"title": "Tokyo", "year": 2024})
    assert corpus.passages[1].id is None and corpus.passages[2].index == 2
    # title_field=None keeps the text alone; the same bytes read another way are another corpus.
    plain = load_corpus(path, title_field=None)
    assert plain.texts[0] == "Tokyo is the capital of Japan."
    assert plain.digest == corpus.digest and plain.fingerprint != corpus.fingerprint


def test_jsonl_text_field_is_configurable(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "c.jsonl", [{"pid": 1, "body": "first"}, {"pid": 2, "body": "second"}])
    assert load_corpus(path, text_field="body").texts == ["first", "second"]
    with pytest.raises(CorpusError, match=r"c\.jsonl:1: no 'text' field \(keys here: pid, body\)"):
        load_corpus(path)


def test_txt_passages_are_separated_by_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("\n\nFirst passage,\non two lines.\n\n\n  \nSecond passage.\r\n\r\nThird.", encoding="utf-8")
    corpus = load_corpus(path)
    assert corpus.texts == ["First passage,\non two lines.", "Second passage.", "Third."]
    assert [p.index for p in corpus.passages] == [0, 1, 2]


@pytest.mark.parametrize(
    ("lines", "line", "message"),
    [
        (['{"text": "ok"}', "", '{"text": "unterminated'], 3, "expected a JSON object, got invalid JSON"),
        (['{"text": "ok"}', '["a list"]'], 2, "expected a JSON object, got a list"),
        (['{"text": "ok"}', '{"title": "T"}'], 2, "no 'text' field (keys here: title)"),
        (['{"text": 42}'], 1, "'text' is a number, expected a string"),
        (['{"text": null}'], 1, "'text' is null, expected a string"),
        (['{"text": "ok"}', '{"text": "   "}'], 2, "'text' is empty"),
        (
            ['{"id": "a", "text": "x"}', '{"id": "b", "text": "y"}', '{"id": "a", "text": "z"}'],
            3,
            "duplicate id 'a' (first on line 1)",
        ),
        (['{"id": [1], "text": "x"}'], 1, "'id' is a list, expected a string or an integer"),
        (['{"title": 3, "text": "x"}'], 1, "'title' is a number, expected a string"),
    ],
)
def test_corpus_errors_name_the_file_and_line(tmp_path: Path, lines: list[str], line: int, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(CorpusError) as caught:
        load_corpus(path)
    text = str(caught.value)
    assert text.startswith(f"{path}:{line}: ") and message in text and "\n" not in text
    assert caught.value.exit_code == EXIT_USAGE


def test_corpus_file_errors(tmp_path: Path) -> None:
    cases: dict[str, tuple[bytes | None, str]] = {
        "missing.jsonl": (None, "corpus file not found"),
        "data.csv": (b"text\nhello\n", "unknown corpus format '.csv'; expected one of: .jsonl, .ndjson, .txt"),
        "empty.jsonl": (b"\n\n", "no passages"),
        "empty.txt": (b"  \n", "no passages"),
        "latin1.txt": (b"fine\n\ncaf\xe9\n", ":3: not UTF-8 text"),
    }
    for name, (content, message) in cases.items():
        path = tmp_path / name
        if content is not None:
            path.write_bytes(content)
        with pytest.raises(CorpusError) as caught:
            load_corpus(path)
        assert str(caught.value).startswith(str(path)) and message in str(caught.value), name


def test_the_shipped_rag_corpus_and_questions_fit_together() -> None:
    corpus = load_corpus(RAG / "corpus.jsonl")
    assert 40 <= len(corpus) <= 80
    assert all(p.id and p.metadata.get("title") and " | " in p.text for p in corpus.passages)
    retriever = BM25Retriever(corpus)

    async def check() -> None:
        for split in ("dev", "train"):
            rows = [json.loads(line) for line in (RAG / f"{split}.jsonl").read_text().splitlines()]
            assert len(rows) >= 10
            for row in rows:
                assert set(row) == {"question", "answer"} and 1 <= len(row["answer"].split()) <= 3
                # Every answer is in the passage BM25 ranks first for its question.
                best = (await retriever.search(row["question"], 1))[0]
                assert row["answer"].lower() in best.text.lower(), (row, best.text)

    run(check())


# -- BM25 -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("What is the capital of Japan?", "tokyo"),
        ("Which city has the Eiffel Tower?", "paris"),
        ("highest mountain", "everest"),
        ("Who discovered penicillin?", "penicillin"),
        ("largest animal", "whale"),
        ("Which river flows into the Mediterranean?", "nile"),
    ],
)
def test_bm25_ranks_the_matching_passage_first(facts: Corpus, query: str, expected: str) -> None:
    passages = run(search(BM25Retriever(facts), query, k=3))
    assert passages[0].id == expected
    assert passages[0].score > passages[1].score


def test_bm25_order_is_by_score_then_corpus_order(facts: Corpus) -> None:
    passages = run(search(BM25Retriever(facts), "capital of France", k=len(FACTS)))
    ids = [p.id for p in passages]
    scores = [p.score for p in passages]
    # France matches "capital" and "France"; Tokyo only "capital"; the rest nothing, in file order.
    assert ids == ["paris", "tokyo", "everest", "whale", "penicillin", "nile"]
    assert scores[0] > scores[1] > 0 and scores[2:] == [0.0] * 4
    assert passages[0].text == "Paris | " + FACTS[0]["text"] and passages[0].index == 0


def test_bm25_k_beyond_the_corpus_and_bad_k(facts: Corpus) -> None:
    assert len(run(search(BM25Retriever(facts), "capital", k=50))) == len(FACTS)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        run(search(BM25Retriever(facts), "capital", k=0))
    # A query of stopwords only (or words the corpus lacks) still answers k passages, as in DSPy.
    assert [p.score for p in run(search(BM25Retriever(facts), "the of and", k=2))] == [0.0, 0.0]


def test_plural_stemming_matches_singular_and_plural() -> None:
    assert [plural_stem(w) for w in ("countries", "mountains", "boxes", "glass", "virus", "is")] == [
        "country",
        "mountain",
        "boxe",
        "glass",
        "virus",
        "is",
    ]
    corpus = Corpus.from_texts(["A country of mountains.", "Many countries share one mountain."])
    stemmed = run(search(BM25Retriever(corpus, use_cache=False), "countries", k=2))
    assert all(p.score > 0 for p in stemmed)
    exact = run(search(BM25Retriever(corpus, use_cache=False, stemmer="none"), "countries", k=2))
    assert [p.score > 0 for p in exact] == [True, False] and exact[0].index == 1


def test_bm25_index_is_cached_on_disk_and_reused(facts: Corpus, isolated_cache: Path) -> None:
    first = BM25Retriever(facts)
    assert first.index_dir.parent == isolated_cache / "retrieval" / "bm25"
    expected = run(search(first, "highest mountain"))
    assert first.index_source == "built"
    files = sorted(first.index_dir.iterdir())
    assert {f.name for f in files} >= {"params.index.json", "vocab.index.json", "data.csc.index.npy"}
    stamps = {f.name: f.stat().st_mtime_ns for f in files}

    # A new retriever over the same file (read again) loads the index: nothing is re-indexed or rewritten.
    second = BM25Retriever(load_corpus(facts.name))
    assert second.index_dir == first.index_dir
    assert run(search(second, "highest mountain")) == expected
    assert second.index_source == "cache"
    assert {f.name: f.stat().st_mtime_ns for f in second.index_dir.iterdir()} == stamps
    # Only the finished index is there: the temporary folder it was written through is gone.
    assert [p.name for p in first.index_dir.parent.iterdir()] == [first.index_dir.name]


def test_bm25_cache_key_follows_corpus_and_settings(facts: Corpus, tmp_path: Path) -> None:
    base = BM25Retriever(facts).index_dir
    assert BM25Retriever(facts, stemmer="none").index_dir != base
    assert BM25Retriever(facts, stopwords="none").index_dir != base
    assert BM25Retriever(facts, k1=1.2).index_dir != base
    assert BM25Retriever(load_corpus(facts.name, title_field=None)).index_dir != base
    changed = load_corpus(write_jsonl(tmp_path / "facts.jsonl", [*FACTS, {"text": "One more passage."}]))
    retriever = BM25Retriever(changed)
    assert retriever.index_dir != base
    run(search(retriever, "passage"))
    assert retriever.index_source == "built"


def test_bm25_rebuilds_a_damaged_index_and_can_skip_the_cache(facts: Corpus, tmp_path: Path) -> None:
    first = BM25Retriever(facts, cache_dir=tmp_path / "cache")
    expected = run(search(first, "capital of Japan"))
    (first.index_dir / "data.csc.index.npy").unlink()
    again = BM25Retriever(facts, cache_dir=tmp_path / "cache")
    assert run(search(again, "capital of Japan")) == expected and again.index_source == "built"
    assert (again.index_dir / "data.csc.index.npy").is_file()

    uncached = BM25Retriever(facts, cache_dir=tmp_path / "none", use_cache=False)
    assert run(search(uncached, "capital of Japan")) == expected
    assert not (tmp_path / "none").exists()


def test_concurrent_first_searches_build_one_index(facts: Corpus) -> None:
    retriever = BM25Retriever(facts)

    async def many() -> list[list[Passage]]:
        return await asyncio.gather(*(retriever.search(q, 1) for q in ["Japan", "whale", "Nile"] * 4))

    results = run(many())
    assert [r[0].id for r in results[:3]] == ["tokyo", "whale", "nile"]
    assert retriever.index_source == "built"
    assert isinstance(retriever, Retriever)


# -- embeddings -------------------------------------------------------------------------------

TOPICS = ("capital", "mountain", "animal", "penicillin", "river", "france")


def topic_embedder(text: str) -> list[float]:
    """One axis per topic word, plus a small constant so no vector is zero."""
    words = re.findall(r"\w+", text.lower())
    return [float(sum(w.startswith(t) for w in words)) for t in TOPICS] + [0.1]


def embedding_requests(server: LMServer) -> list[RecordedRequest]:
    return [r for r in server.requests if r.path.endswith("/embeddings")]


def make_embedder(server: LMServer, corpus: Corpus, **options: Any) -> EmbeddingsRetriever:
    options.setdefault("api_key", SECRET)
    return EmbeddingsRetriever(corpus, "openai/text-embed-test", api_base=server.api_base, **options)


def test_embeddings_rank_by_cosine_similarity(lm_server: LMServer, facts: Corpus) -> None:
    lm_server.embedder = topic_embedder
    passages = run(search(make_embedder(lm_server, facts), "the longest river", k=2))
    assert passages[0].id == "nile" and passages[0].score > 0.9 > passages[1].score
    passages = run(search(make_embedder(lm_server, facts), "capital of France", k=3))
    assert [p.id for p in passages[:2]] == ["paris", "tokyo"]
    assert passages[0].score > passages[1].score > passages[2].score


def test_default_loopback_embedder_finds_a_passage_by_its_own_words(lm_server: LMServer, facts: Corpus) -> None:
    passages = run(search(make_embedder(lm_server, facts), FACTS[4]["title"] + " | " + FACTS[4]["text"], k=1))
    assert passages[0].id == "penicillin" and passages[0].score == pytest.approx(1.0, abs=1e-5)


def test_corpus_is_embedded_in_batches_then_cached(lm_server: LMServer, tmp_path: Path, isolated_cache: Path) -> None:
    rows = [{"id": i, "text": f"passage number {i} about topic {i % 3}"} for i in range(10)]
    corpus = load_corpus(write_jsonl(tmp_path / "ten.jsonl", rows))
    first = make_embedder(lm_server, corpus, batch_size=4)
    run(search(first, "topic 2"))
    sent = embedding_requests(lm_server)
    # 10 passages in batches of 4: three corpus requests, then one for the query.
    assert len(sent) == 4 and first.embeddings_source == "computed"
    batches = sorted((r.body["input"] for r in sent[:3]), key=lambda batch: batch[0])
    assert [len(b) for b in batches] == [4, 4, 2]
    assert [text for batch in batches for text in batch] == corpus.texts
    assert sent[3].body == {"model": "text-embed-test", "input": ["topic 2"]}
    assert first.cache_file.parent == isolated_cache / "retrieval" / "embeddings"
    assert np.load(first.cache_file).shape == (10, 64)

    # A second retriever reads the vectors from disk: only the query goes to the server.
    second = make_embedder(lm_server, load_corpus(tmp_path / "ten.jsonl"), batch_size=4)
    assert second.cache_file == first.cache_file
    run(search(second, "topic 1"))
    assert second.embeddings_source == "cache"
    assert [r.body["input"] for r in embedding_requests(lm_server)[4:]] == [["topic 1"]]
    # Another model or endpoint is another cache entry; the key is not part of it.
    assert make_embedder(lm_server, corpus, api_key="other").cache_file == first.cache_file
    assert EmbeddingsRetriever(corpus, "other-model", api_base=lm_server.api_base).cache_file != first.cache_file


def test_the_api_key_is_a_bearer_header_and_never_reaches_disk(
    lm_server: LMServer, facts: Corpus, isolated_cache: Path
) -> None:
    retriever = make_embedder(lm_server, facts, batch_size=2)
    run(search(retriever, "capital"))
    assert len(embedding_requests(lm_server)) == 4
    assert all(r.headers["authorization"] == f"Bearer {SECRET}" for r in embedding_requests(lm_server))
    assert all(SECRET not in json.dumps(r.body) for r in lm_server.requests)
    assert SECRET not in repr(retriever)
    stored = list(isolated_cache.rglob("*"))
    assert retriever.cache_file in stored
    for path in stored:
        assert SECRET not in str(path)
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes()


def test_the_key_comes_from_openai_api_key_for_openai_models(
    lm_server: LMServer, facts: Corpus, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(RetrievalError, match="needs an API key: export OPENAI_API_KEY"):
        EmbeddingsRetriever(facts, "openai/text-embedding-3-small")
    with pytest.raises(
        RetrievalError, match="embeddings model 'some-model' names no OpenAI-compatible server: give api_base"
    ):
        EmbeddingsRetriever(facts, "some-model")
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    run(search(EmbeddingsRetriever(facts, "openai/text-embedding-3-small", api_base=lm_server.api_base), "x"))
    assert lm_server.requests[0].headers["authorization"] == f"Bearer {SECRET}"


def embeddings_failure(retriever: EmbeddingsRetriever) -> RetrievalError:
    with pytest.raises(RetrievalError) as caught:
        run(search(retriever, "capital"))
    message = str(caught.value)
    assert "\n" not in message and SECRET not in message
    assert caught.value.exit_code == EXIT_RUNTIME
    assert not retriever.cache_file.exists()  # a failed corpus is never cached
    return caught.value


def test_http_errors_are_one_line_without_the_key(lm_server: LMServer, facts: Corpus) -> None:
    lm_server.push(Reply(status=401, json=error_body(f"Incorrect API key provided: {SECRET}")))
    error = embeddings_failure(make_embedder(lm_server, facts))
    assert str(error).startswith(f"HTTP 401 from {lm_server.api_base}/embeddings: the API key was rejected")
    assert "Incorrect API key provided: ***" in str(error)
    assert len(lm_server.requests) == 1  # not retried

    lm_server.push(Reply(status=404, json=error_body("The model does not exist")))
    error = embeddings_failure(make_embedder(lm_server, facts))
    assert "HTTP 404" in str(error) and "'text-embed-test'" in str(error) and "does not exist" in str(error)

    lm_server.push(Reply(status=200, json={"data": [{"index": 0, "embedding": [1.0]}]}))
    error = embeddings_failure(make_embedder(lm_server, facts))
    assert f"replied with 1 embeddings for {len(FACTS)} inputs" in str(error)


def test_transient_failures_are_retried(lm_server: LMServer, facts: Corpus, tmp_path: Path) -> None:
    lm_server.push(Reply(status=503, json=error_body("overloaded")), Reply(status=429))
    passages = run(search(make_embedder(lm_server, facts, base_delay=0.01), "capital", k=1))
    assert passages and len(embedding_requests(lm_server)) == 4  # 2 failures, the corpus, the query

    # A server that asks for a longer pause than anyone should wait fails the search at once.
    lm_server.push(Reply(status=429, json=error_body("quota"), headers={"Retry-After": "3600"}))
    error = embeddings_failure(make_embedder(lm_server, facts, cache_dir=tmp_path / "patient"))
    assert str(error).endswith(
        ": quota; the server asked to wait 3600s before retrying, longer than the 60s dspx waits: try again later"
    )

    lm_server.rule = lambda request, attempt: Reply(status=500, json=error_body("down"))
    # Another cache folder, so the corpus is embedded (and fails) again.
    retriever = make_embedder(lm_server, facts, base_delay=0.01, num_retries=2, cache_dir=tmp_path)
    error = embeddings_failure(retriever)
    assert str(error) == (
        f"gave up after 3 attempts: HTTP 500 server error from {lm_server.api_base}/embeddings: down (num_retries is 2)"
    )
    assert error.status == 500


def test_an_unreachable_server_is_a_clean_error(facts: Corpus) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    retriever = EmbeddingsRetriever(facts, "m", api_base=f"http://127.0.0.1:{port}/v1", api_key=SECRET, num_retries=0)
    error = embeddings_failure(retriever)
    assert str(error).startswith(f"cannot connect to http://127.0.0.1:{port}/v1: is the server running?")


# -- the Retrieve module ----------------------------------------------------------------------


def test_retrieve_module_returns_passage_texts_like_dspy(facts: Corpus) -> None:
    module = Retrieve(BM25Retriever(facts), k=2)
    assert str(module.signature) == "query: str -> passages: list[str]"
    assert module.named_predictors() == []

    async def calls() -> tuple[Prediction, Prediction]:
        try:
            return await module.acall(query="capital of Japan"), await module.acall(query="whale", k=1)
        finally:
            await module.aclose()

    two, one = run(calls())
    assert two.passages == ["Tokyo | " + FACTS[1]["text"], "Paris | " + FACTS[0]["text"]]
    assert one.passages == ["Blue whale | " + FACTS[3]["text"]]
    assert two.usage.total_tokens == 0
    with pytest.raises(ValueError):
        Retrieve(BM25Retriever(facts), k=0)


# -- embeddings calls go through the LM stack: usage, history, limits, retries ----------------


def test_embeddings_calls_are_counted_and_logged_without_the_key(
    lm_server: LMServer, facts: Corpus, tmp_path: Path
) -> None:
    meter, history = UsageMeter(), History(tmp_path)
    lm_server.push(Reply(status=503, json=error_body("busy")))
    retriever = make_embedder(lm_server, facts, batch_size=3, base_delay=0.0, meter=meter, history=history)
    run(search(retriever, "capital"))
    history.close()
    usage = meter.models["openai/text-embed-test"]
    # 6 passages in batches of 3, then the query; one 503 retried.
    assert (usage.calls, usage.failed_calls, usage.retries) == (3, 0, 1)
    assert usage.prompt_tokens == sum(
        len(r.body["input"][i].split()) for r in embedding_requests(lm_server)[1:] for i in range(len(r.body["input"]))
    )
    records = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in records] == ["embeddings"] * 3
    assert records[-1]["inputs"] == ["capital"] and records[-1]["embeddings"] == {"count": 1, "dimensions": 64}
    assert records[-1]["lm"]["model"] == "openai/text-embed-test" and "api_key" not in records[-1]["lm"]
    assert SECRET not in (tmp_path / "history.jsonl").read_text()


def test_a_failed_embeddings_call_is_counted_and_logged(lm_server: LMServer, facts: Corpus, tmp_path: Path) -> None:
    meter, history = UsageMeter(), History(tmp_path)
    lm_server.rule = lambda request, attempt: Reply(status=500, json=error_body("down"))
    embeddings_failure(
        make_embedder(lm_server, facts, num_retries=1, base_delay=0.0, meter=meter, history=history, cache_dir=tmp_path)
    )
    history.close()
    usage = meter.models["openai/text-embed-test"]
    assert (usage.calls, usage.failed_calls, usage.retries) == (0, 1, 1)
    (record,) = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert "HTTP 500" in record["error"] and SECRET not in record["error"]


def test_corpus_batches_respect_the_concurrency_limit(lm_server: LMServer, tmp_path: Path) -> None:
    rows = [{"id": i, "text": f"passage {i}"} for i in range(12)]
    corpus = load_corpus(write_jsonl(tmp_path / "twelve.jsonl", rows))
    lm_server.default_delay = 0.05
    run(search(make_embedder(lm_server, corpus, batch_size=1, max_concurrency=2), "passage"))
    assert len(embedding_requests(lm_server)) == 13 and lm_server.max_in_flight == 2


def test_a_404_from_the_embeddings_endpoint_asks_whether_it_exists(lm_server: LMServer, facts: Corpus) -> None:
    lm_server.push(Reply(status=404, json=error_body("no route")))
    assert "(does the server offer /embeddings?)" in str(embeddings_failure(make_embedder(lm_server, facts)))


def test_a_runs_embeddings_calls_reach_its_usage_line_usage_file_and_history(
    lm_server: LMServer, tmp_path: Path, isolated_cache: Path
) -> None:
    write_jsonl(tmp_path / "corpus.jsonl", FACTS)
    lm_server.responder = lambda body: "[[ ## answer ## ]]\nParis\n\n[[ ## completed ## ]]"
    program = tmp_path / "rag.yaml"
    program.write_text(
        'lm: {model: openai/m, api_base: "${BASE}", num_retries: 0}\n'
        "modules:\n"
        '  search: {type: retrieve, corpus: corpus.jsonl, k: 1, embeddings: {model: openai/emb, api_base: "${BASE}", '
        'api_key: "${KEY}"}}\n'
        '  answer: {signature: "context: list[str], question -> answer"}\n'
        "flow:\n"
        "  - {id: search, module: search, with: {query: $input.question}}\n"
        "  - {id: answer, module: answer, with: {context: $search.passages, question: $input.question}}\n"
        "output: {answer: $answer.answer}\n"
    )
    usage_file = tmp_path / "usage.json"
    done = dspx(
        "run",
        str(program),
        "-i",
        "question=capital of France?",
        "--usage-file",
        str(usage_file),
        BASE=lm_server.api_base,
        KEY=SECRET,
    )
    assert done.returncode == 0, done.stderr
    assert "openai/emb · 2 calls" in done.stderr and "openai/m · 1 call" in done.stderr
    usage = json.loads(usage_file.read_text())["models"]
    assert usage["openai/emb"]["calls"] == 2 and usage["openai/emb"]["prompt_tokens"] > 0
    history = (isolated_cache / "history.jsonl").read_text()
    kinds = [json.loads(line).get("kind", "chat") for line in history.splitlines()]
    assert sorted(kinds) == ["chat", "embeddings", "embeddings"]
    assert SECRET not in history


def test_messages_point_to_the_embeddings_section(lm_server: LMServer, facts: Corpus) -> None:
    lm_server.push(Reply(status=401, json=error_body("who are you")))
    error = embeddings_failure(make_embedder(lm_server, facts, api_key=None))
    assert "no API key was sent; set api_key in the embeddings section" in str(error)
    lm_server.push(Reply.stall(2.0))
    error = embeddings_failure(make_embedder(lm_server, facts, timeout=0.3, num_retries=0))
    assert "timed out after 0.3s waiting for" in str(error) and "raise the embeddings timeout" in str(error)
