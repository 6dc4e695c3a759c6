"""Evaluation metrics shared by both platforms: pure, deterministic, no I/O.

Definitions and edge-case decisions are in ``docs/metrics.md``. The local platform computes
its scores here; the NMP platform's results are cross-checked against the same code.
"""

from flywheel.domain.metrics.cost import (
    CostEstimate,
    PriceTable,
    cost_per_1k_requests,
    estimate_cost,
    monthly_cost,
    monthly_savings,
)
from flywheel.domain.metrics.gate import (
    GateCheck,
    GateResult,
    PairedScores,
    check_non_inferiority,
    evaluate_gate,
)
from flywheel.domain.metrics.judge import (
    CORRECTNESS_SYSTEM,
    JUDGE_SIMILARITY,
    JUDGE_TOOL_CALL_CORRECTNESS,
    SIMILARITY_SYSTEM,
    JudgeScore,
    build_similarity_prompt,
    build_tool_call_correctness_prompt,
    judge_metric,
    parse_correctness,
    parse_similarity,
    similarity_to_unit,
    summarize_judge,
)
from flywheel.domain.metrics.recommendation import (
    CandidateOutcome,
    RankedCandidate,
    Recommendation,
    RejectedCandidate,
    recommend,
)
from flywheel.domain.metrics.retrieval import (
    RetrievalReport,
    evaluate_retrieval,
    mrr_at_k,
    ndcg_at_k,
    recall_at_k,
)
from flywheel.domain.metrics.stats import (
    LatencySummary,
    Score,
    bootstrap_mean,
    paired_difference,
    summarize_latency,
)
from flywheel.domain.metrics.toolcalls import (
    NO_CALL,
    ParsedToolCalls,
    ToolBreakdown,
    ToolCall,
    ToolCallItemScore,
    ToolCallReport,
    evaluate_tool_calls,
    group_by_reference_tool,
    parse_tool_calls,
    score_tool_calls,
)

__all__ = [
    "CORRECTNESS_SYSTEM",
    "JUDGE_SIMILARITY",
    "JUDGE_TOOL_CALL_CORRECTNESS",
    "NO_CALL",
    "SIMILARITY_SYSTEM",
    "CandidateOutcome",
    "CostEstimate",
    "GateCheck",
    "GateResult",
    "JudgeScore",
    "LatencySummary",
    "PairedScores",
    "ParsedToolCalls",
    "PriceTable",
    "RankedCandidate",
    "Recommendation",
    "RejectedCandidate",
    "RetrievalReport",
    "Score",
    "ToolBreakdown",
    "ToolCall",
    "ToolCallItemScore",
    "ToolCallReport",
    "bootstrap_mean",
    "build_similarity_prompt",
    "build_tool_call_correctness_prompt",
    "check_non_inferiority",
    "cost_per_1k_requests",
    "estimate_cost",
    "evaluate_gate",
    "evaluate_retrieval",
    "evaluate_tool_calls",
    "group_by_reference_tool",
    "judge_metric",
    "monthly_cost",
    "monthly_savings",
    "mrr_at_k",
    "ndcg_at_k",
    "paired_difference",
    "parse_correctness",
    "parse_similarity",
    "parse_tool_calls",
    "recall_at_k",
    "recommend",
    "score_tool_calls",
    "similarity_to_unit",
    "summarize_judge",
    "summarize_latency",
]
