"""Chat logs in the documented RAG form → retrieval logs."""

from __future__ import annotations

from typing import Any

from flywheel.domain.logs import ChatLog
from flywheel.domain.retrieval.convert import chat_from_retrieval, retrieval_from_chat
from tests.unit.retrieval.factories import make_log, passage


def _chat(messages: list[dict[str, Any]], answer: Any = "See [d1].") -> ChatLog:
    return ChatLog(
        client_id="acme",
        workload_id="rag",
        timestamp=5,
        request={"messages": messages},
        response={"choices": [{"message": {"role": "assistant", "content": answer}}]},
    )


def test_round_trip_keeps_query_passages_ranks_scores_sources_and_used() -> None:
    original = make_log(
        "What is <the> limit & why?", ["d1", "d2", "d3"], used=["d3", "d1"], source="faq"
    ).model_copy(
        update={
            "retrieved": [
                passage("d1", rank=0, score=0.9, source="faq", text='a "quoted" <b>tag</b> & more'),
                passage("d2", rank=1, score=0.5),
                passage("d3", rank=2, score=0.25, source="manual"),
            ]
        }
    )
    assert retrieval_from_chat(chat_from_retrieval(original)) == original


def test_passages_in_a_system_message_and_a_content_list() -> None:
    chat = _chat(
        [
            {"role": "system", "content": '<passage id="d1">one</passage>'},
            {"role": "user", "content": [{"type": "text", "text": "first question"}]},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": [{"type": "text", "text": "the real question"}]},
            {"role": "tool", "content": 'ctx <passage id="d2" score="x">two</passage>'},
        ],
        answer="Per [d2] and [d1], also [not-a-passage] and [1].",
    )
    log = retrieval_from_chat(chat)
    assert log is not None
    assert log.query == "the real question"
    assert [(p.doc_id, p.rank, p.score) for p in log.retrieved] == [
        ("d1", 0, None),
        ("d2", 1, None),
    ]
    assert log.used_doc_ids == ["d2", "d1"]
    assert (log.client_id, log.workload_id, log.timestamp) == ("acme", "rag", 5)


def test_logs_not_in_the_form_convert_to_none() -> None:
    no_passages = _chat([{"role": "user", "content": "hi"}])
    no_query = _chat([{"role": "tool", "content": '<passage id="d1">x</passage>'}])
    passages_in_user_turn = _chat([{"role": "user", "content": 'q <passage id="d1">x</passage>'}])
    odd = ChatLog(client_id="a", workload_id="w", timestamp=0, request={}, response={})
    for chat in (no_passages, no_query, passages_in_user_turn, odd):
        assert retrieval_from_chat(chat) is None


def test_uncited_answer_gives_a_log_without_positives() -> None:
    chat = _chat(
        [
            {"role": "user", "content": "q"},
            {"role": "tool", "content": '<passage id="d1">x</passage>'},
        ],
        answer=None,
    )
    log = retrieval_from_chat(chat)
    assert log is not None
    assert log.used_doc_ids == []
