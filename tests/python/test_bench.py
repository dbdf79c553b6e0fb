"""The benchmark command on a tiny size, and its up-front memory refusal."""

from __future__ import annotations

import json

import pytest

from proactive_recs import bench

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
}


def test_tiny_run_reports_every_figure(capsys, tmp_path):
    code = bench.main(
        ["--size", "tiny", "--json", "--factors", "8", "--k", "20", "--save", str(tmp_path)]
    )
    assert code == 0
    out = capsys.readouterr().out
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
    assert result["n_interactions"] == bench.SIZES["tiny"].n_transactions
    assert 0 < result["n_users"] <= bench.SIZES["tiny"].n_users
    assert 0 < result["n_items"] <= bench.SIZES["tiny"].n_items
    assert result["peak_rss_mb"] >= result["bench_peak_rss_mb"] > 0
    machine = result["machine"]
    for key in ("cores", "memory_total_gb", "cpu_model", "python", "numpy", "implicit"):
        assert machine[key], key
    # the readable table comes first, and the files are written
    assert out.index("ratio_vs_implicit") < out.index(out.strip().splitlines()[-1])
    assert json.loads((tmp_path / "tiny.json").read_text())["size"] == "tiny"
    assert "# Benchmark, size tiny" in (tmp_path / "tiny.md").read_text()


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
