"""``quantize``: PTQ if it keeps the float model's behaviour, else the best of QAT and its fair control."""

from __future__ import annotations

from core.qat import choose_quantization
from worker.runner import JobContext, handles


@handles("quantize")
def handle(context: JobContext) -> None:
    params = context.params
    source = context.checkpoint(params.checkpoint_id)
    teacher = context.checkpoint(params.teacher_id) if params.teacher_id else None
    states = context.states(params.states, source.arch.input_dim)
    eval_states = context.states(params.eval_states, source.arch.input_dim)
    context.progress(0.1, "trying dynamic and static PTQ, then QAT against retrained PTQ")
    choice = choose_quantization(source, states, eval_states, params.config(), teacher, interrupt=context.interrupt)
    # The chosen attempt is the job's first output; every other tried one follows.
    ordered = sorted(
        (attempt for attempt in choice.attempts if attempt.checkpoint), key=lambda attempt: not attempt.kept
    )
    ids = {}
    for attempt in ordered:
        assert attempt.checkpoint is not None  # skipped attempts were filtered out above
        lineage = [(params.checkpoint_id, "source")] + (
            [(params.teacher_id, "teacher")] if attempt.method in ("qat", "retrained_ptq") else []
        )
        ids[attempt.method] = context.add_checkpoint(
            attempt.checkpoint, name=f"{params.checkpoint_id}-int8-{attempt.method}", lineage=lineage
        )
    chosen = choice.chosen
    context.set_report(
        {
            "passed": choice.passed,
            "chosen": {
                "method": chosen.method,
                "checkpoint_id": ids[chosen.method],
                "selection": chosen.selection,
                "held_out": chosen.report,
            },
            "min_agreement": params.min_agreement,
            "summary": chosen.reason,
            "states": {
                "training": f"{choice.training_rows} rows of `states`: static calibration and QAT/retraining",
                "selection": f"{choice.selection_rows} held-out rows of `states`: every choice",
                "report": "`eval_states`: the figures under `held_out` and the verdict",
            },
            "decision_path": [
                {
                    "method": attempt.method,
                    "checkpoint_id": ids.get(attempt.method),
                    "selection": attempt.selection,
                    "held_out": attempt.report,
                    "kept": attempt.kept,
                    "reason": attempt.reason,
                    "elapsed_seconds": attempt.elapsed_seconds,
                }
                for attempt in choice.attempts
            ],
        }
    )
