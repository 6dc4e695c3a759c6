"""Tool-calling accuracy: parse OpenAI tool calls, compare them, break the result down by tool.

Rules (see ``docs/metrics.md``):

* Calls are compared as a **multiset**: order is ignored, multiplicity is not, so
  ``[a, a, b]`` against ``[a, b, b]`` is wrong.
* Arguments are compared **after JSON parsing**: key order is ignored and numbers compare
  by value (``1 == 1.0``), while ``true`` is not ``1`` and ``"1"`` is not ``1``.
* An item where neither the reference nor the candidate called a tool is **correct**:
  declining to call a tool is itself the behaviour being reproduced.
* A call whose name is missing or whose arguments are not a JSON object is a format error.
  It never matches anything, so the item scores 0, and it lowers the format validity rate.
  Missing or empty-string ``arguments`` mean ``{}`` (servers emit both for no-arg tools).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

from flywheel.domain.metrics.stats import (
    DEFAULT_CONFIDENCE,
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
    Score,
    bootstrap_mean,
)

#: Stands for "no tool call" in per-tool breakdowns and the confusion table.
NO_CALL = "<none>"
#: Label of a call without a usable name, in the confusion table.
INVALID_NAME = "<invalid>"


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One parsed call. ``key`` is a hashable canonical form of the arguments."""

    name: str | None
    arguments: Any
    key: Hashable = field(repr=False, compare=False)

    @property
    def valid(self) -> bool:
        """Whether both name and arguments parsed."""
        return self.name is not None and not isinstance(self.key, _Invalid)


@dataclass(frozen=True, slots=True)
class ParsedToolCalls:
    """The tool calls of one message and the format errors met while reading them."""

    calls: tuple[ToolCall, ...]
    errors: tuple[str, ...]

    @property
    def format_valid(self) -> bool:
        """True when every call was well formed (no calls at all is well formed)."""
        return not self.errors

    @property
    def names(self) -> tuple[str, ...]:
        """Call names, with ``<invalid>`` for calls that had none."""
        return tuple(c.name if c.name is not None else INVALID_NAME for c in self.calls)


class _Invalid:
    """Canonical key of unparseable arguments: equal only to itself, so it never matches."""

    __slots__ = ()


def canonical(value: Any) -> Hashable:
    """Hashable form of a JSON value in which equal JSON values compare equal.

    Integral floats become ints so ``1 == 1.0``; bools are tagged apart from numbers
    because Python's ``True == 1`` is not JSON's.
    """
    if isinstance(value, bool):
        return ("b", value)
    if isinstance(value, int):
        return ("n", value)
    if isinstance(value, float):
        return ("n", int(value) if value.is_integer() else value)
    if isinstance(value, str):
        return ("s", value)
    if value is None:
        return ("z",)
    if isinstance(value, Mapping):
        return ("d", tuple(sorted((str(k), canonical(v)) for k, v in value.items())))
    if isinstance(value, list | tuple):
        return ("l", tuple(canonical(v) for v in value))
    raise TypeError(f"not a JSON value: {type(value).__name__}")


def _parse_arguments(raw: Any) -> tuple[Any, Hashable, str | None]:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return {}, canonical({}), None
    if isinstance(raw, str):
        try:
            raw = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return raw, _Invalid(), "arguments are not valid JSON"
    if not isinstance(raw, Mapping):
        return raw, _Invalid(), f"arguments must be a JSON object, got {type(raw).__name__}"
    try:
        return raw, canonical(raw), None
    except TypeError as exc:
        return raw, _Invalid(), f"arguments are not JSON data: {exc}"


def _parse_call(call: Any) -> tuple[ToolCall, list[str]]:
    errors: list[str] = []
    if not isinstance(call, Mapping):
        return ToolCall(None, None, _Invalid()), ["tool call is not an object"]
    if call.get("type", "function") != "function":
        errors.append(f"tool call type {call.get('type')!r} is not 'function'")
    function = call.get("function", call)  # tolerate a bare {"name", "arguments"} call
    if not isinstance(function, Mapping):
        return ToolCall(None, None, _Invalid()), [*errors, "tool call has no function object"]
    name = function.get("name")
    if not isinstance(name, str) or not name:
        errors.append("tool call has no function name")
        name = None
    arguments, key, error = _parse_arguments(function.get("arguments"))
    if error:
        errors.append(error)
    return ToolCall(name, arguments, key), errors


def parse_tool_calls(message: Mapping[str, Any] | None) -> ParsedToolCalls:
    """Read the tool calls of an OpenAI assistant message (``tool_calls`` or legacy
    ``function_call``); ``None`` or a message without calls yields no calls."""
    if message is None:
        return ParsedToolCalls((), ())
    if not isinstance(message, Mapping):
        return ParsedToolCalls((), ("message is not an object",))
    raw_calls = message.get("tool_calls")
    if raw_calls is None and message.get("function_call") is not None:
        raw_calls = [{"type": "function", "function": message["function_call"]}]
    if raw_calls is None:
        return ParsedToolCalls((), ())
    if not isinstance(raw_calls, list):
        return ParsedToolCalls((), ("tool_calls is not a list",))
    calls: list[ToolCall] = []
    errors: list[str] = []
    for i, raw in enumerate(raw_calls):
        call, call_errors = _parse_call(raw)
        calls.append(call)
        errors.extend(f"call {i}: {e}" for e in call_errors)
    return ParsedToolCalls(tuple(calls), tuple(errors))


@dataclass(frozen=True, slots=True)
class ToolCallItemScore:
    """How one candidate answer compares with the reference answer for one eval item."""

    name_correct: bool
    name_and_args_correct: bool
    format_valid: bool
    reference_format_valid: bool
    reference_names: tuple[str, ...]
    predicted_names: tuple[str, ...]
    errors: tuple[str, ...]

    @property
    def tools(self) -> tuple[str, ...]:
        """The breakdown keys of this item: its distinct reference tools, or ``<none>``."""
        return tuple(sorted(set(self.reference_names))) or (NO_CALL,)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def score_tool_calls(
    reference: Mapping[str, Any] | None, predicted: Mapping[str, Any] | None
) -> ToolCallItemScore:
    """Score one item: the reference and candidate assistant messages."""
    ref = parse_tool_calls(reference)
    pred = parse_tool_calls(predicted)
    comparable = all(c.valid for c in ref.calls) and all(c.name is not None for c in pred.calls)
    name_ok = comparable and Counter(c.name for c in ref.calls) == Counter(
        c.name for c in pred.calls
    )
    args_ok = name_ok and Counter((c.name, c.key) for c in ref.calls) == Counter(
        (c.name, c.key) for c in pred.calls
    )
    return ToolCallItemScore(
        name_correct=name_ok,
        name_and_args_correct=args_ok,
        format_valid=pred.format_valid,
        reference_format_valid=ref.format_valid,
        reference_names=ref.names,
        predicted_names=pred.names,
        errors=pred.errors,
    )


def confusion_pairs(
    reference_names: Sequence[str], predicted_names: Sequence[str]
) -> list[tuple[str, str]]:
    """Pair reference and predicted names for the confusion table.

    Equal names pair first (as many as both sides have); leftovers pair in message order,
    and whatever is still unpaired pairs with ``<none>``. Two empty sides give
    ``(<none>, <none>)`` so correct abstentions are visible too.
    """
    if not reference_names and not predicted_names:
        return [(NO_CALL, NO_CALL)]
    common = Counter(reference_names) & Counter(predicted_names)
    pairs = [(name, name) for name in sorted(common.elements())]
    ref_left = list(reference_names)
    pred_left = list(predicted_names)
    for name in common.elements():
        ref_left.remove(name)
        pred_left.remove(name)
    width = max(len(ref_left), len(pred_left))
    ref_left += [NO_CALL] * (width - len(ref_left))
    pred_left += [NO_CALL] * (width - len(pred_left))
    pairs.extend(zip(ref_left, pred_left, strict=True))
    return pairs


@dataclass(frozen=True, slots=True)
class ToolBreakdown:
    """Scores restricted to the items whose reference called one tool."""

    tool: str
    item_indices: tuple[int, ...]
    function_name_accuracy: Score
    function_name_and_args_accuracy: Score

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "tool": self.tool,
            "n": len(self.item_indices),
            "function_name_accuracy": self.function_name_accuracy.to_dict(),
            "function_name_and_args_accuracy": self.function_name_and_args_accuracy.to_dict(),
        }


@dataclass(frozen=True, slots=True)
class ToolCallReport:
    """Tool-calling scores of one candidate over an eval set, with per-item detail."""

    items: tuple[ToolCallItemScore, ...]
    function_name_accuracy: Score
    function_name_and_args_accuracy: Score
    format_validity_rate: Score
    per_tool: dict[str, ToolBreakdown]
    confusion: dict[str, dict[str, int]]

    def per_item(self, metric: str) -> list[float]:
        """Per-item 0/1 values of ``function_name_accuracy``,
        ``function_name_and_args_accuracy`` or ``format_validity_rate`` (for paired tests)."""
        getters: dict[str, Callable[[ToolCallItemScore], bool]] = {
            "function_name_accuracy": lambda s: s.name_correct,
            "function_name_and_args_accuracy": lambda s: s.name_and_args_correct,
            "format_validity_rate": lambda s: s.format_valid,
        }
        if metric not in getters:
            raise KeyError(
                f"unknown tool-call metric {metric!r}; expected one of {sorted(getters)}"
            )
        get = getters[metric]
        return [float(get(s)) for s in self.items]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (per-item detail included)."""
        return {
            "n": len(self.items),
            "function_name_accuracy": self.function_name_accuracy.to_dict(),
            "function_name_and_args_accuracy": self.function_name_and_args_accuracy.to_dict(),
            "format_validity_rate": self.format_validity_rate.to_dict(),
            "per_tool": {k: v.to_dict() for k, v in self.per_tool.items()},
            "confusion": [
                {"reference": r, "predicted": p, "count": c}
                for r, row in self.confusion.items()
                for p, c in row.items()
            ],
            "items": [s.to_dict() for s in self.items],
        }


def group_by_reference_tool(items: Sequence[ToolCallItemScore]) -> dict[str, tuple[int, ...]]:
    """Item indices per reference tool (an item with calls to two tools is in both)."""
    groups: dict[str, list[int]] = {}
    for i, item in enumerate(items):
        for tool in item.tools:
            groups.setdefault(tool, []).append(i)
    return {tool: tuple(idx) for tool, idx in sorted(groups.items())}


def evaluate_tool_calls(
    references: Sequence[Mapping[str, Any] | None],
    predictions: Sequence[Mapping[str, Any] | None],
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = DEFAULT_SEED,
) -> ToolCallReport:
    """Score a candidate's assistant messages against the reference's, item by item.

    ``predictions[i]`` is ``None`` when the candidate returned nothing usable for item i
    (it then counts as "no call").
    """
    if len(references) != len(predictions):
        raise ValueError(
            f"need one prediction per reference: {len(references)} references, "
            f"{len(predictions)} predictions"
        )
    items = tuple(score_tool_calls(r, p) for r, p in zip(references, predictions, strict=True))

    def ci(values: list[float]) -> Score:
        return bootstrap_mean(values, n_resamples=n_resamples, confidence=confidence, seed=seed)

    names = [float(s.name_correct) for s in items]
    args = [float(s.name_and_args_correct) for s in items]
    per_tool = {
        tool: ToolBreakdown(
            tool=tool,
            item_indices=idx,
            function_name_accuracy=ci([names[i] for i in idx]),
            function_name_and_args_accuracy=ci([args[i] for i in idx]),
        )
        for tool, idx in group_by_reference_tool(items).items()
    }
    confusion: dict[str, Counter[str]] = {}
    for s in items:
        for ref_name, pred_name in confusion_pairs(s.reference_names, s.predicted_names):
            confusion.setdefault(ref_name, Counter())[pred_name] += 1
    return ToolCallReport(
        items=items,
        function_name_accuracy=ci(names),
        function_name_and_args_accuracy=ci(args),
        format_validity_rate=ci([float(s.format_valid) for s in items]),
        per_tool=per_tool,
        confusion={r: dict(sorted(row.items())) for r, row in sorted(confusion.items())},
    )
