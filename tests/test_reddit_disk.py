"""The extractor's disk savers: conv's skip lines to a gzip file (--skip_log) or only their
counts per reason (--skip_counts, the Makefile's default), same content as the original's stderr."""
import collections
import gzip

from reddit_extractor.cli import main


def test_skip_lines_to_a_gzip_file_or_counted(golden, tmp_path):
    g = golden / "reddit" / "inputs"
    common = ["--reddit_input", str(g / "reddit"), "--reddit_output", str(tmp_path), "--keep_keys",
              str(g / "keys" / "2011-01.gz")]
    assert main(["2011-01", "--task=extract", "--gzip", "true"] + common) == 0
    conv = ["2011-01", "--task=conv", "--discard_tgt_keys", str(g / "keys" / "2011-01-o.gz"),
            "--bl_words", str(g / "lists" / "words.blocklist.txt"), "--bl_subreddits",
            str(g / "lists" / "subreddits.blocklist.txt"), "--clean", "true", "--min_score", "1",
            "--min_depth", "2", "--max_depth", "5", "--use_title", "0", "--leaves_only", "1", "--gzip", "true"] + common
    want = (golden / "reddit" / "runs" / "train" / "conv" / "2011-01.tsv.gz.stderr").read_text()
    want = want.split("\n", 1)[1]  # all but the Args line, which stays on stderr
    assert main(conv + ["--skip_log", str(tmp_path / "skips.gz")]) == 0
    assert gzip.decompress((tmp_path / "skips.gz").read_bytes()).decode() == want
    assert main(conv + ["--skip_counts", str(tmp_path / "skips.tsv")]) == 0
    reasons = collections.Counter(line.split("\t")[1] for line in want.splitlines() if line.startswith("skip\t"))
    assert len(reasons) > 2
    assert (tmp_path / "skips.tsv").read_text() == "".join(f"{k}\t{v}\n" for k, v in sorted(reasons.items()))
