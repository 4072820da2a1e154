"""``quantize``: dynamic PTQ, then static PTQ, then QAT, keeping the first that is accurate enough."""

from __future__ import annotations

from core.qat import choose_quantization
from worker.runner import JobContext


def handle(context: JobContext) -> None:
    params = context.params
    source = context.checkpoint(params.checkpoint_id)
    teacher = context.checkpoint(params.teacher_id) if params.teacher_id else None
    states = context.states(params.states, source.arch.input_dim)
    eval_states = context.states(params.eval_states, source.arch.input_dim)
    context.progress(0.1, "trying dynamic PTQ, static PTQ, then QAT")
    choice = choose_quantization(source, states, eval_states, params.config(), teacher)
    # The chosen attempt is the job's first output; every other tried one follows.
    ordered = sorted((attempt for attempt in choice.attempts if attempt.checkpoint), key=lambda attempt: not attempt.kept)
    ids = {}
    for attempt in ordered:
        lineage = [(params.checkpoint_id, "source")] + ([(params.teacher_id, "teacher")] if attempt.method == "qat" else [])
        ids[attempt.method] = context.add_checkpoint(attempt.checkpoint, name=f"{params.checkpoint_id}-int8-{attempt.method}", lineage=lineage)
    chosen = choice.chosen
    met = chosen.agreement is not None and chosen.agreement >= params.min_agreement
    context.set_report(
        {
            "passed": met,
            "chosen": {"method": chosen.method, "checkpoint_id": ids[chosen.method], "agreement": chosen.agreement},
            "min_agreement": params.min_agreement,
            "summary": f"kept {chosen.method} at agreement {chosen.agreement:.4f}"
            + ("" if met else f": no method reached {params.min_agreement}, the best was kept"),
            "decision_path": [
                {
                    "method": attempt.method,
                    "checkpoint_id": ids.get(attempt.method),
                    "agreement_vs_float": attempt.agreement,
                    "agreement_vs_teacher": attempt.teacher_agreement,
                    "fidelity": attempt.fidelity,
                    "kept": attempt.kept,
                    "reason": attempt.reason,
                    "elapsed_seconds": attempt.elapsed_seconds,
                }
                for attempt in choice.attempts
            ],
        }
    )
