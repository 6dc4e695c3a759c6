"""Production log records as Flywheel stores them.

Two kinds share one store and one ingestion path:

* ``chat``: an OpenAI ``chat.completions`` request and the production model's response;
* ``retrieval``: a retriever query, the passages it returned, and which of them the answer
  actually used (or the user clicked) — the raw material of ``embedding_job``.

These classes are the *normalised, stored* form: ids are checked, timestamps are epoch
milliseconds. Deep checks of the OpenAI shapes happen at ingestion
(:mod:`flywheel.domain.log_validation`) and again, as counted quality filters, in the
dataset pipeline; the request and response bodies are kept as the application sent them.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

#: Ids name ES documents, dataset repos and platform jobs, so they are kept to a safe alphabet.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$"

ClientId = Annotated[str, Field(pattern=ID_PATTERN, description="Application or tenant.")]
WorkloadId = Annotated[str, Field(pattern=ID_PATTERN, description="One kind of call in the app.")]
EpochMillis = Annotated[int, Field(ge=0, description="Unix epoch milliseconds.")]


class LogKind(StrEnum):
    """What a log record describes."""

    chat = "chat"
    retrieval = "retrieval"


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    client_id: ClientId
    workload_id: WorkloadId
    timestamp: EpochMillis


class ChatLog(_Record):
    """One LLM call: the OpenAI chat request and the production model's ChatCompletion."""

    kind: Literal[LogKind.chat] = LogKind.chat
    request: dict[str, Any]
    response: dict[str, Any]


class RetrievedPassage(BaseModel):
    """One passage the production retriever returned for a query."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    doc_id: str = Field(min_length=1)
    text: str
    score: float | None = None
    rank: int | None = Field(default=None, ge=0)
    source: str | None = Field(default=None, description="Collection or topic, for stratification.")


class RetrievalLog(_Record):
    """One retrieval: the query, what came back, and which passages were actually used."""

    kind: Literal[LogKind.retrieval] = LogKind.retrieval
    query: str = Field(min_length=1)
    retrieved: list[RetrievedPassage]
    used_doc_ids: list[str] = Field(
        default_factory=list, description="Passages the downstream answer cited or used."
    )
    clicked_doc_ids: list[str] = Field(
        default_factory=list, description="Passages the user clicked or accepted."
    )
    feedback: dict[str, Any] | None = Field(
        default=None, description="Optional free-form feedback, e.g. {'thumbs': 'up'}."
    )


LogRecord = Annotated[ChatLog | RetrievalLog, Field(discriminator="kind")]

#: Validates a stored document (a ``dict``) into the right record class.
LOG_RECORD_ADAPTER: TypeAdapter[ChatLog | RetrievalLog] = TypeAdapter(LogRecord)


class WorkloadCount(BaseModel):
    """How many records one ``(client_id, workload_id)`` pair holds, per kind."""

    model_config = ConfigDict(frozen=True)

    client_id: str
    workload_id: str
    kind: LogKind
    count: int
    newest_timestamp: int | None = None
