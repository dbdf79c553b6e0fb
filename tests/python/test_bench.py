"""The benchmark command on a tiny size, and its up-front memory refusal."""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys

import numpy as np
import pytest

from proactive_recs_tools import bench

REQUIRED_KEYS = {
    "size",
    "ours_s",
    "implicit_s",
    "gemm_s",
    "ratio_vs_implicit",
    "ratio_vs_gemm",
    "fit_ours_s",
    "fit_implicit_s",
    "ratio_fit",
    "peak_rss_mb",
    "n_users",
    "n_items",
    "n_interactions",
    "machine",
    "gemm_per_thread_s",
    "gemm_numpy_blocks_s",
    "topk_compile_s",
    "topk_cache_load_s",
    "topk_breakdown",
}


@pytest.fixture(scope="module")
def tiny_kernels(tmp_path_factory):
    """One kernel benchmark at size tiny, saved: (exit code, what it printed, the save
    directory). Run once for the file: its numba compilations in fresh processes (the
    ``topk_compile_s`` figure) make it ~50 s."""
    saved = tmp_path_factory.mktemp("bench_tiny")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = bench.main(
            ["--size", "tiny", "--json", "--factors", "8", "--k", "20", "--profile"]
            + ["--save", str(saved)]
        )
    return code, printed.getvalue(), saved


def test_tiny_run_reports_every_figure(tiny_kernels):
    code, out, saved = tiny_kernels
    assert code == 0
    result = json.loads(out.strip().splitlines()[-1])

    assert REQUIRED_KEYS <= result.keys()
    assert result["size"] == "tiny"
    for key in ("ratio_vs_implicit", "ratio_vs_gemm", "ratio_fit"):
        assert result[key] > 0, key
    for key in ("ours_s", "implicit_s", "gemm_s", "fit_ours_s", "fit_implicit_s"):
        assert result[key] > 0, key
    assert result["correct"] is True
    assert result["correctness"]["passed"] is True
    assert result["correctness"]["seen_pairs_listed"] == 0
    assert result["fit_same_factors"] is True
    # the GEMM floor is the faster of its two variants; the numba compilation is
    # measured apart (fresh processes) and is not part of any top-K timing
    assert result["gemm_s"] == min(result["gemm_per_thread_s"], result["gemm_numpy_blocks_s"])
    assert result["topk_compile_s"] > 0 and result["topk_cache_load_s"] > 0
    phases = result["topk_breakdown"]
    assert {"wall_s", "setup_s", "kernel_s", "products_s", "selection_s", "merge_s"} <= set(phases)
    assert phases["kernel_s"] <= phases["wall_s"]
    assert result["n_interactions"] == bench.SIZES["tiny"].n_transactions
    assert 0 < result["n_users"] <= bench.SIZES["tiny"].n_users
    assert 0 < result["n_items"] <= bench.SIZES["tiny"].n_items
    assert result["peak_rss_mb"] >= result["bench_peak_rss_mb"] > 0
    machine = result["machine"]
    for key in ("cores", "memory_total_gb", "cpu_model", "python", "numpy", "implicit"):
        assert machine[key], key
    # the readable table comes first, and the files are written
    assert out.index("ratio_vs_implicit") < out.index(out.strip().splitlines()[-1])
    assert json.loads((saved / "tiny.json").read_text())["size"] == "tiny"
    assert "# Benchmark, size tiny" in (saved / "tiny.md").read_text()


def test_absurd_size_is_refused_up_front(capsys):
    code = bench.main(
        ["--users", "1000000000", "--items", "50000000", "--transactions", "100000000000"]
    )
    assert code == bench.EXIT_REFUSED
    err = capsys.readouterr().err
    assert "estimated peak memory" in err
    assert "available" in err
    assert "GB" in err


def test_estimate_grows_with_size_and_refusal_names_it():
    small = bench.estimate_memory(10_000, 2_000, 200_000)
    large = bench.estimate_memory(1_000_000, 100_000, 20_000_000)
    assert 0 < small["total"] < large["total"]
    spec = bench.SizeSpec("huge", 10**9, 10**8, 10**11, 1)
    with pytest.raises(bench.InsufficientMemory, match="refusing size huge"):
        bench.check_memory(spec, factors=64, k=50, pipeline=False)


def test_saving_without_the_pipeline_keeps_the_earlier_dbt_figures():
    earlier = {
        "command": "python -m proactive_recs_tools.bench --size M --pipeline",
        "pipeline_s": 610.5,
        "pipeline_exit_code": -9,
        "pipeline_slowest_nodes": [],
        "ours_s": 12.1,
    }
    now = {"command": "python -m proactive_recs_tools.bench --size M", "ours_s": 2.5}
    merged = bench.carry_pipeline_over(now, earlier)
    assert merged["ours_s"] == 2.5  # this run's figures win
    assert merged["pipeline_s"] == 610.5 and merged["pipeline_exit_code"] == -9
    assert merged["pipeline_from_previous_run"]["command"] == earlier["command"]
    # carried again by a third run: still names the run that measured it
    again = bench.carry_pipeline_over({"ours_s": 2.4}, merged)
    assert again["pipeline_from_previous_run"]["command"] == earlier["command"]
    # a run with its own dbt figures, or an earlier one without any, carries nothing
    assert bench.carry_pipeline_over({"pipeline_s": 1.0}, earlier) == {"pipeline_s": 1.0}
    assert bench.carry_pipeline_over(now, {"ours_s": 1.0}) == now


def test_the_weekly_selector_runs_after_a_daily_build_and_reads_against_the_floor(
    capsys, tmp_path, tiny_kernels
):
    """--pipeline-only --pipeline-selector weekly, with a vars file laid over the demo vars:
    a daily build first (untimed), then the weekly models, timed against implicit's fit and
    two recommend() calls on the same interactions, measured in the same run; the last line
    is one JSON object with the summary keys. (The selector "all" differs only in what dbt
    selects; its merge into a saved kernel result is checked on this run's figures.)"""
    profile = tmp_path / "profile.yml"
    profile.write_text(
        "proactive_recs_recommender_params: {tune: false, second_stage: false}\n"
        "proactive_recs_backtest_weeks: 1\n"
    )
    saved = tmp_path / "results"
    code = bench.main(
        ["--size", "tiny", "--json", "--pipeline-only", "--pipeline-selector", "weekly"]
        + ["--pipeline-vars", str(profile), "--factors", "8", "--k", "20"]
        + ["--pipeline-mem-limit-gb", "8", "--save", str(saved)]
    )
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and result["pipeline_exit_code"] == 0, result.get("pipeline_log_tail")
    assert result["pipeline_setup_exit_code"] == 0 and result["pipeline_setup_s"] > 0
    assert result["pipeline_setup"] == "--selector daily"
    assert result["size"] == "tiny" and result["selector"] == "weekly"
    assert result["floor_s"] == pytest.approx(
        result["floor_fit_s"] + result["floor_recommend_s"], abs=0.02
    )
    assert result["ratio_vs_floor"] == pytest.approx(result["wall_s"] / result["floor_s"], rel=0.01)
    # the floor timed right before and right after the timed build; floor_s their mean
    before, after = result["floor_runs_s"]
    assert result["floor_s"] == pytest.approx((before + after) / 2, abs=0.01)
    assert result["ratio_vs_floor_runs"] == [
        pytest.approx(result["wall_s"] / before, abs=0.01),
        pytest.approx(result["wall_s"] / after, abs=0.01),
    ]
    assert result["peak_rss_mb"] >= result["dbt_peak_rss_mb"] > 0
    slowest = result["slowest_nodes"]
    assert 0 < len(slowest) <= 5
    assert {"node", "seconds", "peak_rss_mb", "cores_busy"} <= set(slowest[0])
    # the machine's busy cores, sampled over the build and while each node ran
    cores = os.cpu_count()
    assert 0 < result["pipeline_cores_busy"] <= cores
    assert all(
        row["cores_busy"] is None or 0 <= row["cores_busy"] <= cores
        for row in result["pipeline_slowest_nodes"]
    )
    # only weekly nodes were timed: the evaluation and the backtest, none of the daily ones
    names = {row["node"].split(".")[-1] for row in result["pipeline_slowest_nodes"]}
    assert {"evaluation_results", "campaign_backtest_results"} & names
    assert not names & {"recommendations", "notification_plan", "stg_transactions_audited"}
    assert json.loads((saved / "pipeline_tiny_weekly.json").read_text())["selector"] == "weekly"
    assert result["pipeline_vars"] == {
        "proactive_recs_recommender_params": {"tune": False, "second_stage": False},
        "proactive_recs_backtest_weeks": 1,
    }
    assert 0 < result["pipeline_peak_rss_mb"] <= 8 * 1024
    # a --pipeline-only run's dbt figures merged into a saved kernel result of the same size
    # (what --save does for the selector "all"): the kernel timings stay, the dbt ones come
    # from this run, and the markdown says so
    _, _, kernel_dir = tiny_kernels
    earlier = json.loads((kernel_dir / "tiny.json").read_text())
    merged = bench.merge_pipeline_run(earlier, result)
    assert merged["ours_s"] == earlier["ours_s"] and merged["pipeline_s"] == result["pipeline_s"]
    assert merged["pipeline_run"]["command"] == result["command"]
    assert merged["peak_rss_mb"] == round(
        max(earlier["peak_rss_mb"], result["pipeline_peak_rss_mb"]), 1
    )
    markdown = bench.format_markdown(merged)
    assert "The dbt figures come from a separate run" in markdown
    assert "proactive_recs_backtest_weeks" in markdown


def test_vars_file_must_be_a_mapping(tmp_path):
    path = tmp_path / "bad.yml"
    path.write_text("- tune\n- false\n")
    with pytest.raises(ValueError, match="expected a YAML mapping"):
        bench.read_vars_file(path)
    assert bench.read_vars_file(None) == {}


def test_dbt_estimate_is_capped_by_the_watchdog_limit():
    free = bench.estimate_memory(1_000_000, 100_000, 20_000_000, pipeline=True)
    capped = bench.estimate_memory(
        1_000_000, 100_000, 20_000_000, pipeline=True, pipeline_limit_bytes=12 * 2**30
    )
    assert free["dbt"] > 12 * 2**30 == capped["dbt"]
    assert capped["total"] < free["total"]


def test_tree_walk_benchmark_prints_both_timings_and_one_json_line(capsys):
    """bench_trees checks the compiled walk against scikit-learn's probabilities before
    timing (it raises when they differ), and reports both in the last line."""
    from proactive_recs_tools import bench_trees

    bench_trees.main(["--rows", "20000", "--trees", "12", "--features", "8", "--repeats", "1"])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["rows"] == 20000 and result["trees"] == 12 and result["counts_per_walk"] == 3
    assert result["compiled_walk_s"] > 0 and result["scikit_learn_s"] > 0
    assert result["ratio_vs_scikit_learn"] > 0 and result["rowwise_walk_s"] > 0
    assert result["kernel"] == "tables"  # the ranker's shape (15 leaves)


def test_the_pipeline_benchmark_measures_the_package_defaults_not_the_demos_extras():
    """The bench builds on the demo's vars (run date, cutoff) but times the package's default
    weekly set: without the demo's week-old-stages evaluation, unless a profile asks."""
    assert bench._dbt_vars(None)["proactive_recs_evaluate_week_old_stages"] is False
    asked = bench._dbt_vars({"proactive_recs_evaluate_week_old_stages": True})
    assert asked["proactive_recs_evaluate_week_old_stages"] is True


def test_busy_cores_are_sampled_while_a_child_runs_and_averaged_per_node(tmp_path):
    """_watch_child samples the machine's busy cores beside the memory; a child that keeps
    one core busy shows at least most of one. Per node, the mean is over the samples taken
    while it executed (each sample covers the interval before it)."""
    burn = "import time\nend = time.time() + 1.5\nwhile time.time() < end: pass\n"
    run = bench._watch_child(
        [sys.executable, "-c", burn], tmp_path / "burn.log", None, interval=0.1
    )
    assert run["exit_code"] == 0 and len(run["cpu"]) >= 5
    busy = [cores for _, cores in run["cpu"][2:-2]]  # away from the start and the end
    assert 0.5 <= np.mean(busy) <= os.cpu_count()
    # per node: samples at 10.5, 11.0 and 11.5 fall in a node executing from 10.2 to 11.5
    results = [
        {
            "unique_id": "model.p.slow",
            "status": "success",
            "execution_time": 1.3,
            "timing": [
                {
                    "name": "execute",
                    "started_at": "1970-01-01T00:00:10.200000Z",
                    "completed_at": "1970-01-01T00:00:11.500000Z",
                }
            ],
        },
        {"unique_id": "model.p.fast", "status": "success", "execution_time": 0.0, "timing": []},
    ]
    cpu = [(10.0, 2.0), (10.5, 1.0), (11.0, 1.5), (11.5, 0.5), (12.0, 2.0)]
    summary = bench._node_summary(results, [(10.5, 100.0), (11.0, 300.0)], cpu)
    slow, fast = summary["pipeline_slowest_nodes"]
    assert slow["cores_busy"] == 1.0 and slow["peak_rss_mb"] == 300.0
    assert fast["cores_busy"] is None
    # without cpu samples, no such field (what scratch scripts pass)
    assert "cores_busy" not in bench._node_summary(results, [])["pipeline_slowest_nodes"][0]
