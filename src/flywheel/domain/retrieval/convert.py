"""Chat logs of RAG applications → retrieval logs.

The one documented form (``docs/embedding-datasets.md`` has a full example):

* the request's ``messages`` contain, in a message with role ``tool`` or ``system``, one or
  more blocks ``<passage id="DOC_ID" source="..." score="0.83">TEXT</passage>``
  (``source`` and ``score`` optional; attribute values and TEXT are XML-escaped, so a
  passage may contain ``<`` as ``&lt;``); the order of the blocks across messages is the
  retriever's rank, starting at 0;
* the query is the text of the last ``user`` message (string content, or the ``text``
  parts of a content list), wherever the passages sit relative to it;
* the response's ``choices[0].message.content`` cites passages as ``[DOC_ID]``; cited ids
  that match a passage become ``used_doc_ids`` (other bracketed text is ignored — brackets
  are common in prose).

Anything else converts to ``None``: the converter never guesses.
"""

from __future__ import annotations

import html
import re
from typing import Any

from flywheel.domain.logs import ChatLog, RetrievalLog, RetrievedPassage

_PASSAGE = re.compile(r"<passage\s+(?P<attrs>[^>]*)>(?P<text>.*?)</passage>", re.DOTALL)
_ATTR = re.compile(r'(?P<name>[a-z_]+)="(?P<value>[^"]*)"')
#: Ids with whitespace or brackets cannot be cited in this form.
_CITATION = re.compile(r"\[([^\[\]\s]+)\]")
_CONTEXT_ROLES = frozenset({"tool", "system"})


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            part["text"]
            for part in content
            if isinstance(part, dict)
            and part.get("type") == "text"
            and isinstance(part.get("text"), str)
        )
    return ""


def _passage(match: re.Match[str], rank: int) -> RetrievedPassage | None:
    attrs = {m["name"]: html.unescape(m["value"]) for m in _ATTR.finditer(match["attrs"])}
    doc_id = attrs.get("id", "")
    if not doc_id:
        return None
    try:
        score = float(attrs["score"]) if "score" in attrs else None
    except ValueError:
        score = None
    return RetrievedPassage(
        doc_id=doc_id,
        text=html.unescape(match["text"]).strip(),
        score=score,
        rank=rank,
        source=attrs.get("source") or None,
    )


def retrieval_from_chat(log: ChatLog) -> RetrievalLog | None:
    """Convert one chat log in the documented form; None when it is not in that form."""
    messages = log.request.get("messages")
    if not isinstance(messages, list):
        return None
    query = ""
    passages: list[RetrievedPassage] = []
    for message in messages:
        if not isinstance(message, dict):
            continue
        role, text = message.get("role"), _text_of(message.get("content"))
        if role == "user":
            query = text.strip()
        elif role in _CONTEXT_ROLES:
            for match in _PASSAGE.finditer(text):
                passage = _passage(match, rank=len(passages))
                if passage is not None:
                    passages.append(passage)
    if not query or not passages:
        return None
    ids = {p.doc_id for p in passages}
    used = list(dict.fromkeys(c for c in _CITATION.findall(_answer_text(log.response)) if c in ids))
    return RetrievalLog(
        client_id=log.client_id,
        workload_id=log.workload_id,
        timestamp=log.timestamp,
        query=query,
        retrieved=passages,
        used_doc_ids=used,
    )


def _answer_text(response: dict[str, Any]) -> str:
    choices = response.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return ""
    message = choices[0].get("message")
    return _text_of(message.get("content")) if isinstance(message, dict) else ""


def render_passages(passages: list[RetrievedPassage]) -> str:
    """The documented ``<passage>`` block for a list of passages (rank = list order)."""
    blocks = []
    for p in passages:
        attrs = f'id="{html.escape(p.doc_id)}"'
        if p.source:
            attrs += f' source="{html.escape(p.source)}"'
        if p.score is not None:
            attrs += f' score="{p.score!r}"'
        blocks.append(f"<passage {attrs}>{html.escape(p.text, quote=False)}</passage>")
    return "\n".join(blocks)


def chat_from_retrieval(log: RetrievalLog, *, answer: str | None = None) -> ChatLog:
    """The chat log a RAG application in the documented form would have logged.

    Used for demo data and to test the converter; ``answer`` defaults to a sentence citing
    every used passage. Clicks and free-form feedback have no place in a chat log and are lost.
    """
    if answer is None:
        answer = "Answer based on " + " ".join(f"[{d}]" for d in log.used_doc_ids) + "."
    return ChatLog(
        client_id=log.client_id,
        workload_id=log.workload_id,
        timestamp=log.timestamp,
        request={
            "messages": [
                {"role": "system", "content": "Answer from the passages; cite them as [id]."},
                {"role": "user", "content": log.query},
                {"role": "tool", "content": render_passages(log.retrieved)},
            ]
        },
        response={"choices": [{"message": {"role": "assistant", "content": answer}}]},
    )
