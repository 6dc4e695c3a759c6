"""The demo workload: seeded, valid in the log schema, a realistic mix, learnable arguments."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from flywheel.config.resolve import deep_merge, load_base_config
from flywheel.config.schema import JobConfig
from flywheel.demo import demo_config_text
from flywheel.demo.workload import (
    CANCEL_REASONS,
    CHAT_WORKLOAD_ID,
    CLIENT_ID,
    DAY_MS,
    GENERAL_ARTICLES,
    KNOWLEDGE_BASE,
    PRODUCT_CODES,
    PRODUCT_PAGES,
    PRODUCTS,
    REFUND_REASONS,
    RETRIEVAL_WORKLOAD_ID,
    TOOL_NAMES,
    TOOLS,
    generate_chat_logs,
    generate_retrieval_logs,
    to_jsonl_lines,
)
from flywheel.domain.log_validation import Accepted, validate_log_record
from flywheel.domain.logs import ChatLog, RetrievalLog
from flywheel.services.datasets import build_datasets
from flywheel.services.ingestion import ingest_lines
from flywheel.services.retrieval_datasets import build_retrieval_datasets
from flywheel.stores.logs_sqlite import SqliteLogStore

NOW = 1_790_000_000_000
N = 1000


@pytest.fixture(scope="module")
def chat_logs() -> list[dict[str, Any]]:
    return list(generate_chat_logs(N, seed=3, now_ms=NOW))


def _answer(record: dict[str, Any]) -> dict[str, Any]:
    message: dict[str, Any] = record["response"]["choices"][0]["message"]
    return message


def _user(record: dict[str, Any]) -> str:
    text: str = record["request"]["messages"][-1]["content"]
    return text


def test_same_seed_same_bytes_other_seed_other_traffic() -> None:
    def lines(seed: int) -> bytes:
        return b"".join(to_jsonl_lines(generate_chat_logs(200, seed=seed, now_ms=NOW)))

    assert lines(1) == lines(1)
    assert lines(1) != lines(2)
    retrieval = [
        b"".join(to_jsonl_lines(generate_retrieval_logs(100, seed=s, now_ms=NOW)))
        for s in (5, 5, 6)
    ]
    assert retrieval[0] == retrieval[1]
    assert retrieval[0] != retrieval[2]


def test_every_chat_record_is_valid(chat_logs: list[dict[str, Any]]) -> None:
    for i, record in enumerate(chat_logs):
        outcome = validate_log_record(record, index=i, now_ms=NOW)
        assert isinstance(outcome, Accepted), outcome
        assert isinstance(outcome.record, ChatLog)
        assert outcome.record.client_id == CLIENT_ID
        assert outcome.record.workload_id == CHAT_WORKLOAD_ID


def test_every_retrieval_record_is_valid() -> None:
    for i, record in enumerate(generate_retrieval_logs(500, seed=4, now_ms=NOW)):
        outcome = validate_log_record(record, index=i, now_ms=NOW)
        assert isinstance(outcome, Accepted), outcome
        assert isinstance(outcome.record, RetrievalLog)
        assert outcome.record.workload_id == RETRIEVAL_WORKLOAD_ID


def test_tool_and_text_mix(chat_logs: list[dict[str, Any]]) -> None:
    calls = Counter(
        call["function"]["name"]
        for record in chat_logs
        for call in _answer(record).get("tool_calls") or []
    )
    text = [r for r in chat_logs if not _answer(r).get("tool_calls")]
    assert 0.10 <= len(text) / N <= 0.20
    assert set(calls) == set(TOOL_NAMES)
    assert min(calls.values()) >= 50
    assert all(_answer(r)["content"] for r in text)
    assert all(r["response"]["choices"][0]["finish_reason"] == "stop" for r in text)
    assert any(len(_answer(r).get("tool_calls") or []) == 2 for r in chat_logs)
    only_tools = list(generate_chat_logs(100, seed=1, now_ms=NOW, text_share=0.0))
    assert all(_answer(r).get("tool_calls") for r in only_tools)
    only_text = list(generate_chat_logs(100, seed=1, now_ms=NOW, text_share=1.0))
    assert not any(_answer(r).get("tool_calls") for r in only_text)


def test_arguments_are_json_objects_that_fit_the_schemas(chat_logs: list[dict[str, Any]]) -> None:
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
    for record in chat_logs:
        assert record["request"]["tools"] == TOOLS
        for call in _answer(record).get("tool_calls") or []:
            arguments = call["function"]["arguments"]
            assert isinstance(arguments, str)
            parsed = orjson.loads(arguments)
            assert isinstance(parsed, dict)
            schema = schemas[call["function"]["name"]]
            assert set(schema["required"]) <= set(parsed) <= set(schema["properties"])
            if call["function"]["name"] == "cancel_order" and "reason" in parsed:
                assert parsed["reason"] in CANCEL_REASONS
            if call["function"]["name"] == "request_refund":
                assert parsed["reason"] in REFUND_REASONS
                assert isinstance(parsed["amount"], int | float)


def test_copied_argument_values_appear_in_the_users_words(
    chat_logs: list[dict[str, Any]],
) -> None:
    for record in chat_logs:
        user = _user(record)
        for call in _answer(record).get("tool_calls") or []:
            for key, value in orjson.loads(call["function"]["arguments"]).items():
                if key in {"order_id", "tracking_number", "street", "city", "postal_code"}:
                    assert value in user, (key, value, user)


def test_phrasing_varies_and_timestamps_cover_the_last_30_days(
    chat_logs: list[dict[str, Any]],
) -> None:
    users = [_user(r) for r in chat_logs]
    assert len(set(users)) / len(users) > 0.85
    stamps = [r["timestamp"] for r in chat_logs]
    assert stamps == sorted(stamps)
    assert NOW - 30 * DAY_MS <= min(stamps) < NOW - 25 * DAY_MS
    assert NOW - 5 * DAY_MS < max(stamps) < NOW
    assert any(len(r["request"]["messages"]) > 2 for r in chat_logs)  # some earlier turns


def test_retrieval_logs_use_retrieved_passages_and_not_always_the_top_one() -> None:
    records = list(generate_retrieval_logs(400, seed=9, now_ms=NOW))
    ids = {a.doc_id for a in KNOWLEDGE_BASE}
    top1 = used = 0
    for record in records:
        retrieved = [p["doc_id"] for p in record["retrieved"]]
        assert len(retrieved) == 5
        assert set(retrieved) <= ids
        assert set(record["used_doc_ids"]) <= set(retrieved)
        assert set(record["clicked_doc_ids"]) <= set(record["used_doc_ids"])
        if record["used_doc_ids"]:
            used += 1
            top1 += retrieved[0] == record["used_doc_ids"][0]
    assert used > 0.7 * len(records)
    assert 0.2 * used < top1 < 0.9 * used


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def test_knowledge_base_has_near_duplicate_product_pages_without_the_codes() -> None:
    ids = [a.doc_id for a in KNOWLEDGE_BASE]
    assert len(ids) == len(set(ids)) == 160
    assert len({a.text for a in KNOWLEDGE_BASE}) == len(KNOWLEDGE_BASE)
    assert len(PRODUCT_CODES) == len(PRODUCTS) == 14
    assert len(set(PRODUCT_CODES.values())) == len(PRODUCTS)  # one product per code
    codes = {c.lower() for c in PRODUCT_CODES}
    for page in KNOWLEDGE_BASE:
        assert not codes & _words(page.text), page.doc_id  # the pages never show the codes
    by_topic: dict[str, list[str]] = {}
    for page in PRODUCT_PAGES:
        assert page.product in PRODUCT_CODES
        assert PRODUCT_CODES[page.product] in page.text
        by_topic.setdefault(page.topic, []).append(page.text)
    assert all(len(texts) == len(PRODUCTS) for texts in by_topic.values())
    for texts in by_topic.values():  # same layout, other product: similar, never identical
        a, b = _words(texts[0]), _words(texts[1])
        assert 0.3 < len(a & b) / len(a | b) < 0.9  # below the negatives' duplicate threshold
    assert all(not a.product and a.questions for a in GENERAL_ARTICLES)


def test_retrieval_queries_use_the_codes_consistently() -> None:
    """A code in a query always means the same product, so the logs teach the mapping."""
    records = list(generate_retrieval_logs(1500, seed=11, now_ms=NOW))
    pages = {a.doc_id: a for a in KNOWLEDGE_BASE}
    codes = {c.lower(): c for c in PRODUCT_CODES}
    code_to_products: dict[str, set[str]] = {}
    coded = named = general = 0
    for record in records:
        if not record["used_doc_ids"]:
            continue
        page = pages[record["used_doc_ids"][0]]
        found = [codes[w] for w in _words(record["query"]) if w in codes]
        if not page.product:
            general += 1
            assert not found, record["query"]
            continue
        assert len(found) <= 1, record["query"]
        if found:
            coded += 1
            code_to_products.setdefault(found[0], set()).add(page.product)
        else:
            named += 1
            name = PRODUCT_CODES[page.product].lower().split()[0]
            assert name in record["query"].lower(), record["query"]
    assert all(products == {code} for code, products in code_to_products.items())
    assert set(code_to_products) == set(PRODUCT_CODES)  # every code is seen in training data
    used = coded + named + general
    assert coded > 0.45 * used
    assert 0.15 * used < named < 0.4 * used
    assert 0.1 * used < general < 0.35 * used
    queries = [r["query"] for r in records]
    assert len(set(queries)) > 0.9 * len(queries)  # held-out queries are worded differently


def test_the_production_retriever_confuses_products_of_the_same_topic() -> None:
    records = list(generate_retrieval_logs(600, seed=7, now_ms=NOW))
    pages = {a.doc_id: a for a in KNOWLEDGE_BASE}
    misses = hard = 0
    for record in records:
        if not record["used_doc_ids"]:
            continue
        page = pages[record["used_doc_ids"][0]]
        if not page.product:
            continue
        others = [pages[p["doc_id"]] for p in record["retrieved"] if p["doc_id"] != page.doc_id]
        hard += any(o.topic == page.topic and o.product != page.product for o in others)
        misses += record["retrieved"][0]["doc_id"] != page.doc_id
    assert hard > 300  # other products' pages on the topic: the hard negatives
    assert misses > 100  # the right page is often not first


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="n must be"):
        next(generate_chat_logs(-1))
    with pytest.raises(ValueError, match="text_share"):
        next(generate_chat_logs(1, text_share=1.5))
    with pytest.raises(ValueError, match="top_k"):
        next(generate_retrieval_logs(1, top_k=0))


def _demo_config() -> JobConfig:
    overlay = yaml.safe_load(demo_config_text())
    return JobConfig.model_validate(deep_merge(load_base_config(), overlay))


def test_ingests_and_builds_datasets_with_the_demo_config(tmp_path: Path) -> None:
    config = _demo_config()
    store = SqliteLogStore(tmp_path / "logs.db")
    try:
        lines = to_jsonl_lines(generate_chat_logs(300, seed=7))
        report = ingest_lines(lines, store=store)
        assert (report.accepted, report.rejected, report.written) == (300, 0, 300)
        retrieval = ingest_lines(to_jsonl_lines(generate_retrieval_logs(200, seed=7)), store=store)
        assert retrieval.written == 200
        built = build_datasets(
            log_store=store,
            client_id=CLIENT_ID,
            workload_id=CHAT_WORKLOAD_ID,
            config=config,
            out_dir=tmp_path / "ds",
        )
        assert built.workload_type == "tool_calling"
        assert built.manifest["splits"]["eval"]["records"] == config.data_split_config.eval_size
        assert built.manifest["stages"]["kept"] > 250
        assert built.icl_files
        rag = build_retrieval_datasets(
            log_store=store,
            client_id=CLIENT_ID,
            workload_id=RETRIEVAL_WORKLOAD_ID,
            config=config,
            out_dir=tmp_path / "rag",
        )
        assert rag.files
    finally:
        store.close()
