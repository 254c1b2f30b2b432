"""METEOR 1.5 through the real jar, run as the original ran it.

``java -Xmx1g -jar meteor-1.5.jar hyp.txt refs_merged.txt -r N -l en -norm`` in file mode
(not ``-stdio``); the value is the double after ``Final score:``.  ``refs_merged.txt`` holds the
N slot references of each example on consecutive lines.  Jar and ``data/paraphrase-en.gz`` come
from the ``pycocoevalcap`` package (``pip install dialogpt[meteor]``), Java from ``PATH``.

The jar needs ~8 s (loading paraphrases), so :meth:`Meteor.start` launches it in the background
and the caller collects the value later (:meth:`MeteorRun.result`).
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import tempfile
import threading
import time
from functools import lru_cache
from pathlib import Path
from typing import Callable

from ..files import write_lines
from .base import Metric, MetricUnavailable

__all__ = ["Meteor", "MeteorRun", "MeteorUnavailable", "find_meteor_jar", "HOW_TO_GET"]

HOW_TO_GET = "to get it: `pip install dialogpt[meteor]` (METEOR 1.5 jar) and a Java runtime (JRE 8+) on PATH"


class MeteorUnavailable(MetricUnavailable):
    """Java or the jar is missing, or the jar did not print a score; the message says why."""


def find_meteor_jar() -> Path | None:
    """``meteor-1.5.jar`` of the installed pycocoevalcap (with ``data/paraphrase-en.gz``), or None."""
    env = os.environ.get("DSTC_METEOR_JAR")
    candidates = [Path(env)] if env else []
    spec = importlib.util.find_spec("pycocoevalcap")
    if spec is not None:  # a namespace package: no __file__, only search locations
        candidates += [Path(p) / "meteor" / "meteor-1.5.jar" for p in spec.submodule_search_locations or []]
    for jar in candidates:
        if jar.is_file() and (jar.parent / "data" / "paraphrase-en.gz").is_file():
            return jar
    return None


@lru_cache(maxsize=None)
def java_version(java: str) -> str:
    """``java -version`` first line's version string ("17.0.15"), or "?"."""
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60).stderr
    except OSError:
        return "?"
    first = out.splitlines()[0] if out else ""
    return first.split('"')[1] if first.count('"') >= 2 else "?"


class MeteorRun:
    """A running jar; :meth:`result` waits for it and returns the corpus METEOR.

    Its output is read as it comes: the jar prints ``Segment i score:`` for each hypothesis, so
    `progress` (a callable taking one line) hears how far it is, at most every `every` seconds.
    """

    def __init__(self, proc: subprocess.Popen, workdir: tempfile.TemporaryDirectory | None,
                 n_segments: int = 0, progress: Callable[[str], None] | None = None, every: float = 10.0):
        self._proc, self._workdir = proc, workdir
        self._value: float | None = None
        self._out: list[bytes] = []
        self._err = b""
        self._n, self._progress, self._every = n_segments, progress, every
        self._readers = [threading.Thread(target=self._read_out, daemon=True),
                         threading.Thread(target=self._read_err, daemon=True)]
        for t in self._readers:
            t.start()

    def _read_out(self) -> None:
        t0 = last = time.monotonic()
        done = 0
        if self._progress:
            self._progress(f"METEOR: started the jar on {self._n:,} segments (it first loads its paraphrase table)")
        for line in self._proc.stdout:
            self._out.append(line)
            if line.startswith(b"Segment "):
                done += 1
                now = time.monotonic()
                if self._progress and (now - last >= self._every or done == self._n):
                    last = now
                    self._progress(f"METEOR: {done:,}/{self._n:,} segments scored ({now - t0:.0f}s)")

    def _read_err(self) -> None:
        self._err = self._proc.stderr.read()

    def result(self) -> float:
        if self._value is None:
            try:
                self._proc.wait()
                for t in self._readers:
                    t.join()
            finally:
                if self._workdir is not None:
                    self._workdir.cleanup()
            for line in b"".join(self._out).decode("utf-8", "replace").split("\n"):
                if "Final score:" in line:
                    self._value = float(line.split()[-1])
                    break
            else:
                tail = self._err.decode("utf-8", "replace").strip().splitlines()[-3:]
                raise MeteorUnavailable("METEOR jar printed no final score: " + " | ".join(tail))
        return self._value


class Meteor(Metric):
    """METEOR 1.5 (rank task, ``-l en -norm``), corpus level from summed statistics.

    Args:
        jar: path to ``meteor-1.5.jar`` (default: the pycocoevalcap one, or ``$DSTC_METEOR_JAR``).
        java: java executable (default: ``java`` on PATH).
        heap: JVM heap, as the original (``-Xmx1g``).
    """

    name = "meteor"

    def __init__(self, jar: str | Path | None = None, java: str | None = None, heap: str = "1g",
                 progress: Callable[[str], None] | None = None):
        self.jar = Path(jar) if jar else find_meteor_jar()
        self.java = java or shutil.which("java")
        self.heap = heap
        self.progress = progress

    def available(self) -> str | None:
        """None when METEOR can run, else one line saying what is missing and how to get it."""
        if self.java is None:
            return f"METEOR unavailable: no `java` on PATH; {HOW_TO_GET}"
        if self.jar is None:
            return f"METEOR unavailable: meteor-1.5.jar (+ data/paraphrase-en.gz) not found; {HOW_TO_GET}"
        return None

    def signature(self) -> str:
        """The jar's settings and the Java that ran it (the table's signature line shows it)."""
        return f"meteor:1.5(-l en -norm,java {java_version(self.java)})"

    def start(self, hyps: list[str], refs: list[list[str]], workdir: str | Path | None = None) -> MeteorRun:
        """Write ``hyp.txt`` + ``refs_merged.txt`` and launch the jar in the background.

        Args:
            hyps: hypothesis per example (as scored: cleaned).
            refs: ``refs[i]`` = the slot references of example ``i`` (same count for all).
            workdir: where to write the two files (default: a temporary folder, removed after).
        """
        missing = self.available()
        if missing:
            raise MeteorUnavailable(missing)
        tmp = None
        if workdir is None:
            tmp = tempfile.TemporaryDirectory(prefix="dstc_meteor_")
            workdir = tmp.name
        workdir = Path(workdir)
        # Java's readLine also breaks lines on a lone \r: keep one example per line.
        hyp_path, refs_path = workdir / "hyp.txt", workdir / "refs_merged.txt"
        write_lines(hyp_path, [h.replace("\r", " ") for h in hyps])
        write_merged_refs(refs_path, refs)
        n_refs = len(refs[0]) if refs else 1
        cmd = [self.java, f"-Xmx{self.heap}", "-Dfile.encoding=UTF-8", "-jar", str(self.jar),
               str(hyp_path), str(refs_path), "-r", str(n_refs), "-l", "en", "-norm"]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        return MeteorRun(proc, tmp, len(hyps), self.progress)

    def begin(self, corpus):
        run = self.start(corpus.hyps, corpus.refs)  # the jar works while the caller scores the rest
        return lambda: {"meteor": run.result()}

    def corpus_score(self, corpus) -> dict:
        return self.begin(corpus)()


def write_merged_refs(path: str | Path, refs: list[list[str]]) -> None:
    """METEOR's multi-reference file: example-major, slot-minor, every line ``\\n``-terminated."""
    with open(path, "w", encoding="utf-8") as f:
        for slots in refs:
            for r in slots:
                f.write(r.replace("\r", " ") + "\n")
