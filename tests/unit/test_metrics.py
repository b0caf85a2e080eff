"""The health check's verdicts and the metrics' text format, without a worker."""

from __future__ import annotations

import time

from mealplan_cli.ops.metrics import Health, WorkerMetrics


def test_health_follows_the_database_and_the_loop() -> None:
    health = Health(stale_after=5)
    assert health.healthy() == (True, "ok")
    health.last_database_answer = time.monotonic() - 10
    ok, reason = health.healthy()
    assert not ok
    assert reason.startswith("no database answer for")
    health.database_answered()
    health.loop_alive = False
    assert health.healthy() == (False, "worker loop stopped")


def test_metrics_render_counters_histograms_and_cost() -> None:
    metrics = WorkerMetrics()
    metrics.handler_finished(
        "generate_meal_plan",
        42.0,
        {"input_tokens": 1000, "output_tokens": 500, "cached_tokens": 0, "cost_usd": 0.0012},
    )
    metrics.done["generate_meal_plan"] += 1
    metrics.failed["generate_meal_plan"] += 1
    metrics.errors["ProviderUnavailableError"] += 2
    text = metrics.render()
    assert 'mealworker_job_errors_total{kind="ProviderUnavailableError"} 2' in text
    assert 'mealworker_jobs_completed_total{job_type="generate_meal_plan"} 1' in text
    assert 'mealworker_jobs_failed_total{job_type="generate_meal_plan"} 1' in text
    assert 'le="60"} 1' in text
    assert 'le="30"} 0' in text
    assert 'mealworker_openai_tokens_total{kind="input"} 1000' in text
    assert "mealworker_openai_cost_usd_total 0.001200" in text


def test_label_values_are_escaped_as_the_text_format_requires() -> None:
    """A job type is an application's string: a quote, a backslash or a line feed in it must
    not end the label early or split the sample over two lines."""
    job_type = 'say "hi"\\now\nnext'
    metrics = WorkerMetrics()
    metrics.handler_finished(job_type, 0.2, None)
    metrics.done[job_type] += 1
    text = metrics.render()
    escaped = 'job_type="say \\"hi\\"\\\\now\\nnext"'
    assert f"mealworker_jobs_completed_total{{{escaped}}} 1" in text
    assert f'mealworker_job_processing_seconds_bucket{{{escaped},le="0.5"}} 1' in text
    samples = [line for line in text.splitlines() if not line.startswith("#")]
    assert all(line.rsplit(" ", 1)[1].replace(".", "").isdigit() for line in samples)
