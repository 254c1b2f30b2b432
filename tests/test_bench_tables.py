"""benchmarks/write_readme_table.py: each README table is rewritten from the benchmarks' JSON
between its own markers, every figure as median [min-max], and nothing else in the file moves."""
import sys

import pytest

WHEN = dict(date="2026-12-07", machine="cpu, 2 cores", load="load avg 1.0 1.0 1.0")


@pytest.fixture(scope="module")
def wrt(repo_dir):
    sys.path.insert(0, str(repo_dir / "benchmarks"))
    import write_readme_table
    return write_readme_table


def readme(wrt):
    parts = ["# title\n"]
    for name in wrt.TABLES:
        start, end = wrt.markers(name)
        parts.append(f"{start}\n| old {name} |\n{end}\nafter {name}\n")
    return "".join(parts)


def test_each_table_is_rewritten_from_its_own_files(wrt):
    prepro = dict(WHEN, bench="prepro", rows=[
        dict(name="original", lines_per_s=1000, lines_per_s_lo=900, lines_per_s_hi=1100, lines_per_cpu_s=1000,
             lines_per_cpu_s_lo=950, lines_per_cpu_s_hi=1050, wall_x=1, wall_x_lo=1, wall_x_hi=1, cpu_x=1,
             cpu_x_lo=1, cpu_x_hi=1),
        dict(name="ours w1", lines_per_s=9800, lines_per_s_lo=9100, lines_per_s_hi=10200, lines_per_cpu_s=7700,
             lines_per_cpu_s_lo=7000, lines_per_cpu_s_hi=8000, wall_x=9.6, wall_x_lo=8.4, wall_x_hi=10.3, cpu_x=7.5,
             cpu_x_lo=7.1, cpu_x_hi=7.9)])
    loader = dict(WHEN, bench="loader", rows=[
        dict(name="ours", features_per_s=35024, lo=33000, hi=36000, features_per_cpu_s=35500, cpu_lo=34000,
             cpu_hi=36500, ratio=3.5, ratio_lo=3.3, ratio_hi=3.6, batch_size=32),
        dict(name="original-like", features_per_s=9976, lo=9800, hi=10100, features_per_cpu_s=10000, cpu_lo=9900,
             cpu_hi=10200, ratio=1.0, ratio_lo=1.0, ratio_hi=1.0, batch_size=32)])
    reddit = dict(WHEN, bench="reddit", rows=[
        dict(name=k, comments=1_000_000, comments_per_s=v, rate_lo=v - 1000, rate_hi=v + 1000, cpu_s=1e6 / v,
             cpu_lo=1e6 / v - 1, cpu_hi=1e6 / v + 1, rss_mb=900, rss_lo=880, rss_hi=950,
             **({} if k == "baseline" else dict(speedup=v / 30000, speedup_lo=1.9, speedup_hi=2.1, cpu_speedup=2.0,
                                                cpu_speedup_lo=1.9, cpu_speedup_hi=2.2)))
        for k, v in (("baseline", 30000), ("ours1", 60000), ("ours2", 83000))])
    dstc = dict(WHEN, bench="dstc", rows=[dict(name=k, seconds=5.5, lo=5.1, hi=6.0, examples=6000, refs=15)
                                          for k in ("prepare", "metrics", "wall", "cpu")])
    text = readme(wrt)
    only_first = wrt.rewrite(text, [prepro])
    assert "| old perf-other |" in only_first and "| old perf-table |" not in only_first
    assert "9,800 [9,100-10,200] lines/s" in only_first and "9.6x [8.4-10.3] wall" in only_first
    both = wrt.rewrite(only_first, [loader, dstc, reddit])
    assert "| old perf-other |" not in both and both.count("after perf-") == 2 and both.startswith("# title\n")
    assert "35,024 [33,000-36,000] features/s" in both and "3.5x [3.3-3.6] (goal 20,000 features/s: met)" in both
    assert "5.5 [5.1-6.0] s wall" in both and "goal < 10 s: met" in both
    assert "1M comments (.zst), 2 processes" in both and "83,000 [82,000-84,000] comments/s" in both
    assert "2.77x [1.90-2.10] wall" in both
    assert wrt.rewrite(both, [loader, dstc, reddit]) == both  # same files, same table


def test_a_benchmark_without_a_table_or_a_readme_without_markers_is_an_error(wrt):
    with pytest.raises(SystemExit, match="no table shows nosuch"):
        wrt.rewrite(readme(wrt), [dict(WHEN, bench="nosuch", rows=[])])
    with pytest.raises(SystemExit, match="no perf-other markers"):
        wrt.rewrite("# no tables\n", [dict(WHEN, bench="dstc", rows=[])])
