"""`make bench`: run every benchmark, then collect their JSON into results/latest.json and a Markdown table.

The table is also written into README.md between the ``bench:start`` and
``bench:end`` markers, so the figures the README shows are the last measured ones.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from bench.common import RESULTS_DIR, environment

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = (
    "bench_distill",
    "bench_recombination",
    "bench_quantize",
    "bench_crossover",
    "bench_search_core",
    "bench_evolve_core",
    "bench_ptq_job",
    "bench_job_breakdown",
    "bench_search_job",
    "bench_evolve_workers",
    "bench_load",
    "bench_any_mlp",
    "bench_memory",
    "bench_report_listing",
)
README_BLOCK = re.compile(r"(<!-- bench:start -->\n).*?(<!-- bench:end -->)", re.DOTALL)

# (what, result file, path inside it, unit formatter, reference or target)
ROWS = (
    (
        "Distillation, baseline student, 1 thread",
        "distill",
        "distill_wall_seconds_median",
        "{:.3f} s",
        "reference 2.7 s; target < 0.3 s",
    ),
    (
        "Student held-out agreement, teacher 0 / 1 (val split)",
        "distill",
        (
            "quality.shared_init.teacher_seed_0.val_action_agreement",
            "quality.shared_init.teacher_seed_1.val_action_agreement",
        ),
        "{:.3f}",
        "reference 0.85-0.91",
    ),
    (
        "Student agreement on 5000 fresh states, teacher 0 / 1",
        "distill",
        (
            "quality.shared_init.teacher_seed_0.fresh_action_agreement",
            "quality.shared_init.teacher_seed_1.fresh_action_agreement",
        ),
        "{:.3f}",
        "",
    ),
    (
        "Student probability similarity (T=3), teacher 0 / 1",
        "distill",
        (
            "quality.shared_init.teacher_seed_0.val_prob_similarity_t3",
            "quality.shared_init.teacher_seed_1.val_prob_similarity_t3",
        ),
        "{:.4f}",
        "target >= 0.985",
    ),
    (
        "Students of teachers 0-5, mean agreement on fresh states (3 seeds)",
        "recombination",
        "runbook.4.student_agreement_mean",
        "{:.3f}",
        "target >= 0.90",
    ),
    (
        "Runbook child (weighted 0.5, `medium` toward A): agreement with A, mean / min",
        "recombination",
        ("runbook.4.child_agreement_with_a_mean", "runbook.4.child_agreement_with_a_min"),
        "{:.3f}",
        "targets 0.95 / 0.93; reference 0.93",
    ),
    (
        "Dual-parent child: share of the bound (1 + AB) / 2 kept, mean / oracle",
        "recombination",
        ("dual.5.bound_fraction_mean", "dual.5.oracle_mean"),
        "{:.3f}",
        "targets 0.90 / 0.95",
    ),
    (
        "QAT beats PTQ of the same student trained as long, teachers 0-5 x 2 seeds",
        "recombination",
        "qat.qat_wins",
        "{:d} of 12",
        "",
    ),
    ("Distillation worker peak RSS", "distill", "peak_rss_bytes", "bytes", ""),
    (
        "Float vs int8 single sample, 8-32-32-4, same functional forward (median)",
        "quantize",
        (
            "networks.student_8-32-32-4.paths.float_functional.latency_median_us",
            "networks.student_8-32-32-4.paths.int8_dynamic.latency_median_us",
        ),
        "{:.1f} us",
        "target int8 <= 20 us",
    ),
    (
        "Float nn.Module vs torch.ao dynamic int8 module, 8-32-32-4 (median)",
        "quantize",
        (
            "networks.student_8-32-32-4.paths.float_module.latency_median_us",
            "networks.student_8-32-32-4.paths.torch_ao_dynamic.latency_median_us",
        ),
        "{:.1f} us",
        "torch.ao int8 is ~2x float",
    ),
    (
        "Int8 throughput at batch 256 / 1024, 8-32-32-4",
        "quantize",
        (
            "networks.student_8-32-32-4.paths.int8_dynamic.states_per_sec_at_256",
            "networks.student_8-32-32-4.paths.int8_dynamic.states_per_sec_at_1024",
        ),
        "states/s",
        "target >= 5 M/s at 256",
    ),
    (
        "Int8 parameter / file compression, 8-32-32-4",
        "quantize",
        (
            "networks.student_8-32-32-4.size.param_compression_dynamic",
            "networks.student_8-32-32-4.size.file_compression_dynamic",
        ),
        "{:.2f}x",
        "targets 2.8x / 2x; reference file -2.3%",
    ),
    (
        "Int8 parameter / file compression, 8-64-4",
        "quantize",
        (
            "networks.parent_8-64-64-4.size.param_compression_dynamic",
            "networks.parent_8-64-64-4.size.file_compression_dynamic",
        ),
        "{:.2f}x",
        "target file 2.8x",
    ),
    (
        "Crossover, 8-64-4 parents, weighted (median)",
        "crossover",
        "crossover_median_us_8_64_4.weighted",
        "{:.0f} us",
        "target < 1 ms; reference 0.15-0.32 ms",
    ),
    (
        "`medium` fine-tune on 5000 states, 1 thread",
        "crossover",
        "finetune_medium_5000_states.loop_seconds_median",
        "{:.3f} s",
        "target < 0.3 s; reference 2.5 s",
    ),
    (
        "Aligned vs weighted min(agree A, agree B), same-teacher students",
        "crossover",
        (
            "quality_min_agreement.students_same_teacher.mean_min_agreement.aligned_activations_repair",
            "quality_min_agreement.students_same_teacher.mean_min_agreement.weighted",
        ),
        "{:.3f}",
        "",
    ),
    (
        "Halving minus grid winner score, `default` preset, 5 seeds",
        "search_core",
        "summary.halving_minus_grid_primary",
        "{:+.3f}",
        "target within 0.01",
    ),
    (
        "Halving's share of grid's fine-tune epochs, 5 seeds",
        "search_core",
        "summary.halving_epoch_share",
        "{:.0%}",
        "target well under 50%",
    ),
    (
        "Evolve (population 8, 4 generations) vs search `default`: winner's min agreement, mean of 18 runs",
        "evolve_core",
        ("summary.evolve.mean_primary", "summary.search.mean_primary"),
        "{:.3f}",
        "target evolve >= search",
    ),
    (
        "Evolve at the search's fine-tune epochs vs search: winner's min agreement",
        "evolve_core",
        ("summary.evolve_equal_budget.mean_primary", "summary.search.mean_primary"),
        "{:.3f}",
        "target evolve >= search",
    ),
    (
        "PTQ job POST to finished_at, Redis + PostgreSQL (median / p95 of 5 runs)",
        "ptq_job",
        ("postgres.post_to_finished.median_ms", "postgres.post_to_finished.p95_ms"),
        "{:.1f} ms",
        "target < 50 ms; reference CLI ~3 s",
    ),
    (
        "PTQ job POST to seen succeeded (2 ms polling), Redis + PostgreSQL",
        "ptq_job",
        ("postgres.post_to_seen.median_ms", "postgres.post_to_seen.p95_ms"),
        "{:.1f} ms",
        "",
    ),
    (
        "PTQ job POST to finished_at, embedded (median / p95 of 5 runs)",
        "ptq_job",
        ("embedded.post_to_finished.median_ms", "embedded.post_to_finished.p95_ms"),
        "{:.1f} ms",
        "",
    ),
    (
        "One PTQ job: API admit / commit / publish / HTTP (median)",
        "job_breakdown",
        ("median_ms.admit", "median_ms.commit", "median_ms.publish", "median_ms.http"),
        "{:.1f} ms",
        "Server-Timing",
    ),
    (
        "One PTQ job: queued / claim / load / compute / write (median)",
        "job_breakdown",
        ("median_ms.queued", "median_ms.claim", "median_ms.load", "median_ms.compute", "median_ms.write"),
        "{:.1f} ms",
        "worker timings_ms",
    ),
    (
        "`minimal` search, 1 / 2 workers (POST to succeeded)",
        "search_job",
        ("by_workers.1.minimal_search_s.median", "by_workers.2.minimal_search_s.median"),
        "{:.2f} s",
        "target < 1.5 s at 2 workers; reference 7.3 s serial, 73-222 s at 2",
    ),
    (
        "Search speed-up from 1 to 2 workers (median of 5 interleaved pairs)",
        "search_job",
        "speedup_1_to_2_workers",
        "{:.2f}x",
        "target >= 1.6x",
    ),
    ("Pipeline, POST to succeeded, 2 workers", "search_job", "by_workers.2.pipeline_s.median", "{:.2f} s", ""),
    (
        "Evolve generation (population 8, 1000 states), 1 / 2 workers (median over 5 runs each)",
        "evolve_workers",
        (
            "workloads.1000 states.by_workers.1.wall_s.median",
            "workloads.1000 states.by_workers.2.wall_s.median",
        ),
        "{:.3f} s",
        "",
    ),
    (
        "Evolve generation wall time, 2 workers / 1 worker",
        "evolve_workers",
        "ratio_2_to_1_workers",
        "{:.2f}",
        "target <= 0.65",
    ),
    (
        "Load: accepted PTQ jobs/s (50 clients x 30 s, 2 API processes, 2 workers, median of 5 runs)",
        "load",
        "median_of_runs.accepted_jobs_per_s",
        "{:.1f}",
        "target >= 50 at the default queue bound",
    ),
    (
        "Load: accepted POST latency p50 / p99",
        "load",
        ("median_of_runs.accepted_post_latency_ms_p50", "median_of_runs.accepted_post_latency_ms_p99"),
        "{:.1f} ms",
        "target p99 < 300 ms",
    ),
    (
        "Load: accepted POST p99 once the queue is at its bound",
        "load",
        "median_of_runs.accepted_post_latency_ms_p99_at_the_bound",
        "{:.1f} ms",
        "the first ~10 s fill the queue with every client admitted",
    ),
    (
        "Load: queue-to-start latency p50 / p99",
        "load",
        ("median_of_runs.queue_to_start_ms_p50", "median_of_runs.queue_to_start_ms_p99"),
        "{:.1f} ms",
        "",
    ),
    ("Load: jobs lost / duplicated (all runs)", "load", ("lost_jobs", "duplicated_jobs"), "{:d}", "target 0 / 0"),
    (
        "Distillation fused / autograd, reference layout",
        "any_mlp",
        (
            "distillation.reference 8-64-64-4 layernorm relu.fused.seconds_best",
            "distillation.reference 8-64-64-4 layernorm relu.autograd.seconds_best",
        ),
        "{:.3f} s",
        "target fused >= 3x faster",
    ),
    (
        "ONNX export / torch.onnx.export float latency, 8-32-32-4",
        "any_mlp",
        "serving.8-32-32-4 layernorm relu.ratios.our_float_vs_torch_onnx_export_latency",
        "{:.2f}",
        "target <= 1.10",
    ),
    (
        "ONNX int8 export / onnxruntime quantize_dynamic latency, 8-32-32-4",
        "any_mlp",
        "serving.8-32-32-4 layernorm relu.ratios.our_int8_vs_ort_quantize_dynamic_latency",
        "{:.2f}",
        "target <= 1.10",
    ),
    (
        "API resident memory after upload, synthesis, export and a PTQ job",
        "memory",
        "api_after_sequence_mib",
        "{:.0f} MiB",
        "target < 150 MiB",
    ),
    ("Idle worker resident memory", "memory", "worker_idle_mib", "{:.0f} MiB", "target < 300 MiB"),
    ("API start-up to /healthz (median)", "memory", "startup_to_healthz_s.median", "{:.2f} s", ""),
    (
        "`GET /reports?kind=distill&sort=-FIGURE&limit=50`, 100,000 jobs on PostgreSQL (median / p95)",
        "report_listing",
        ("listings.reports_sorted_by_figure.median_ms", "listings.reports_sorted_by_figure.p95_ms"),
        "{:.1f} ms",
        "target < 100 ms",
    ),
    (
        "... with `where=FIGURE>=0.9` / with two `where=`",
        "report_listing",
        ("listings.reports_sorted_with_where.median_ms", "listings.reports_sorted_two_wheres.median_ms"),
        "{:.1f} ms",
        "target < 100 ms",
    ),
    (
        "... with `tag=` and `experiment=` (median / p95)",
        "report_listing",
        (
            "listings.reports_sorted_by_tag_and_experiment.median_ms",
            "listings.reports_sorted_by_tag_and_experiment.p95_ms",
        ),
        "{:.1f} ms",
        "target < 100 ms",
    ),
    (
        "`GET /jobs?tag=T&limit=50`, 100,000 jobs (median / p95)",
        "report_listing",
        ("listings.jobs_by_tag.median_ms", "listings.jobs_by_tag.p95_ms"),
        "{:.1f} ms",
        "target < 100 ms",
    ),
)


def lookup(data: dict, path: str):
    """``data`` at a dotted path; a numeric part indexes a list."""
    for part in path.split("."):
        if isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        elif isinstance(data, dict) and part in data:
            data = data[part]
        else:
            return None
    return data


def render(value, unit: str) -> str:
    if value is None:
        return "not measured"
    if isinstance(value, list):  # one figure per seed: show the range
        return (
            render(min(value), unit)
            if min(value) == max(value)
            else f"{render(min(value), unit)} to {render(max(value), unit)}"
        )
    if unit == "bytes":
        return f"{value / 2**20:.0f} MiB"
    if unit == "states/s":
        return f"{value / 1e6:.2f} M/s"
    return unit.format(value)


def table(results: dict[str, dict]) -> str:
    lines = ["| figure | measured | reference / target |", "| --- | --- | --- |"]
    for label, name, paths, unit, note in ROWS:
        data = results.get(name, {})
        values = [render(lookup(data, path), unit) for path in ((paths,) if isinstance(paths, str) else paths)]
        lines.append(f"| {label} | {' / '.join(values)} | {note} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    failures = []
    # `--collect` only rebuilds latest.json and the tables from the results already measured.
    for name in () if "--collect" in sys.argv[1:] else BENCHMARKS:
        print(f"== {name}", flush=True)
        if subprocess.run([sys.executable, "-m", f"bench.{name}"], cwd=ROOT).returncode != 0:
            failures.append(name)
    results = {
        path.stem: json.loads(path.read_text()) for path in sorted(RESULTS_DIR.glob("*.json")) if path.stem != "latest"
    }
    (RESULTS_DIR / "latest.json").write_text(
        json.dumps({"environment": environment(), "failed": failures, "results": results}, indent=2) + "\n"
    )
    markdown = table(results)
    (RESULTS_DIR / "latest.md").write_text(markdown)
    readme = ROOT / "README.md"
    readme.write_text(README_BLOCK.sub(lambda match: match.group(1) + markdown + match.group(2), readme.read_text()))
    print(markdown)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
