"""prepare_data.py on a 100 MB record: wall time and peak RSS, against the floor a reader cannot
beat (Python iterating the same file's lines, which holds the whole line).

    python benchmarks/bench_prepare_data.py [--mb 100] [--rounds 3] [--json OUT]

Two inputs, each 20 small conversations + one 100 MB record + 20 more: a JSONL line and a CSV
field. Every run is a fresh process (its own peak RSS, VmHWM), interleaved by round. The issue that
asked for this measured 367 s / 12.4 GB (JSONL line) and 509 s / 12.45 GB (CSV field) before.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import interleaved, load, ratio_rounds, summary, write_json  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MEASURE = ("import runpy, sys\nfrom lsp_io.cpu import peak_rss_kib\nsys.argv = sys.argv[1:]\n"
           "try:\n    runpy.run_path(sys.argv[0], run_name='__main__')\n"
           "finally:\n    print('RSS', peak_rss_kib(), file=sys.stderr)\n")
FLOOR = "import sys\nfor line in open(sys.argv[1], 'rb'):\n    pass\n"


def make_inputs(folder: Path, mb: int) -> dict[str, Path]:
    small = [json.dumps([f"hello {i} how are you", f"fine {i} thanks"]) for i in range(20)]
    jsonl, table = folder / "big.jsonl", folder / "big.csv"
    with open(jsonl, "w") as f:
        f.write("\n".join(small) + '\n["' + "x" * (mb << 20) + '", "y"]\n' + "\n".join(small) + "\n")
    with open(table, "w") as f:
        f.write("conversation_id,speaker,text\n" + "".join(f"{i},a,hi {i}\n{i},b,hello {i}\n" for i in range(20)))
        f.write('big,a,"' + "word " * ((mb << 20) // 5) + '"\n')
        f.write("".join(f"x{i},a,hi {i}\nx{i},b,hello {i}\n" for i in range(20)))
    return {"jsonl": jsonl, "csv": table}


def run(args: list[str], rss: dict, key: str) -> None:
    r = subprocess.run([sys.executable, "-c", MEASURE, *args], cwd=REPO, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{args[0]} failed: {r.stderr[-2000:]}")
    rss.setdefault(key, []).append(int(r.stderr.strip().splitlines()[-1].split()[1]) / 1024)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--mb", type=int, default=100)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--json")
    a = p.parse_args()
    print(f"{load()} (before)")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        floor_py = Path(tmp) / "floor.py"
        floor_py.write_text(FLOOR)
        for fmt, path in make_inputs(Path(tmp), a.mb).items():
            rss: dict = {}
            n = [0]

            def ours():
                n[0] += 1
                run(["prepare_data.py", "--input", str(path), "--out", f"{tmp}/o-{fmt}-{n[0]}", "--test_frac", "0"],
                    rss, "ours")

            times = interleaved({"prepare_data": ours, "floor": lambda: run([str(floor_py), str(path)], rss, "floor")},
                                a.rounds)
            t, f = summary(times["prepare_data"]), summary(times["floor"])
            r = summary(ratio_rounds(times["prepare_data"], times["floor"]))
            m, mf = summary(rss["ours"]), summary(rss["floor"])
            print(f"{fmt:5s} {a.mb} MB record: prepare_data {t[0]:.2f} s [{t[1]:.2f}-{t[2]:.2f}], peak RSS "
                  f"{m[0]:.0f} MB [{m[1]:.0f}-{m[2]:.0f}] | floor (line iteration) {f[0]:.2f} s, {mf[0]:.0f} MB "
                  f"| time ratio {r[0]:.2f}x [{r[1]:.2f}-{r[2]:.2f}]")
            rows.append(dict(format=fmt, mb=a.mb, seconds=t, rss_mb=m, floor_seconds=f, floor_rss_mb=mf, ratio=r))
    print(f"{load()} (after)")
    write_json(a.json, "bench_prepare_data", rows)


if __name__ == "__main__":
    main()
