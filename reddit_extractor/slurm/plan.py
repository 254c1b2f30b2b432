"""What a SLURM run of the Makefile consists of, and how far it got, read from files only.

The month lists, folders and final files come from the Makefile itself (``make -s print-VAR``),
so they are defined once.  A month is a task named ``<split>-<YYYY-MM>`` whose make target is
its conv file; a final job (``train``, ``refs``, ``test``) is a make goal run after every month
of its split.  Each job leaves ``<name>.log`` (make's output) and ``<name>.rc`` (its exit status)
in the log folder: with the targets themselves that is the whole state, no ``sacct`` needed.
"""
import json
import os
import subprocess
from dataclasses import asdict, dataclass, field

RX_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# the months a final goal needs (train: TRAIN_MONTHS; refs is built from test.tsv.gz)
GOAL_SPLIT = {'train': 'train', 'test': 'test', 'refs': 'test'}
PLAN_FILE = 'plan.json'


class PlanError(Exception):
    """A bad request (unknown goal, bad VAR=value) or a Makefile that cannot say its months."""


@dataclass
class Plan:
    make_vars: list            # VAR=value, as given to make (PYTHON included)
    log_dir: str
    tasks: list = field(default_factory=list)   # [name, target] per month, absolute paths
    finals: list = field(default_factory=list)  # [goal, final file] per goal

    def save(self):
        from ..outputs import write_atomic
        write_atomic(os.path.join(self.log_dir, PLAN_FILE), json.dumps(asdict(self), indent=1) + '\n')

    @classmethod
    def load(cls, log_dir):
        path = os.path.join(log_dir, PLAN_FILE)
        try:
            with open(path, encoding='utf-8') as f:
                return cls(**json.load(f))
        except FileNotFoundError:
            raise PlanError('%s: no plan here; submit first (python -m reddit_extractor slurm submit)' % path) from None


def make_values(make_vars, names):
    """``make -s print-NAME ...`` with the user's variables: one value per name."""
    r = subprocess.run(['make', '-s', '-C', RX_DIR] + list(make_vars) + ['print-' + n for n in names],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise PlanError('make could not list the months: %s' % (r.stderr.strip().splitlines() or ['?'])[-1])
    values = r.stdout.split('\n')[:len(names)]
    return dict(zip(names, values))


def _abs(path):
    return os.path.normpath(os.path.join(RX_DIR, path))


def build_plan(make_vars, goals=None, log_dir=None):
    """The months and final jobs for ``goals`` (default: the Makefile's ``all``)."""
    for v in make_vars:
        if '=' not in v or not v.split('=', 1)[0].isidentifier():
            raise PlanError('%r: make variables are given as VAR=value' % v)
    names = ['T', 'ALL_TARGETS', 'TRAIN_MONTHS', 'TEST_MONTHS', 'TARGETS_TRAIN', 'TARGETS_TEST',
             'FINAL_train', 'FINAL_test', 'FINAL_refs']
    val = make_values(make_vars, names)
    goals = goals or val['ALL_TARGETS'].split()
    bad = [g for g in goals if g not in GOAL_SPLIT]
    if bad:
        raise PlanError('unknown goal(s) %s; choose from %s' % (', '.join(bad), ', '.join(GOAL_SPLIT)))
    plan = Plan(make_vars=list(make_vars), log_dir=os.path.abspath(log_dir or os.path.join(_abs(val['T']), 'slurm')))
    for split in dict.fromkeys(GOAL_SPLIT[g] for g in goals):  # train before test, each once
        months = val[split.upper() + '_MONTHS'].split()
        targets = val['TARGETS_' + split.upper()].split()
        plan.tasks += [['%s-%s' % (split, m), _abs(t)] for m, t in zip(months, targets)]
    plan.finals = [[g, _abs(val['FINAL_' + g])] for g in dict.fromkeys(goals)]
    return plan


def error_line(log_path):
    """The line that says why a job failed: the last ``error: ...`` line of its log, else the
    last line that is not make's own ``make: *** ...`` noise."""
    try:
        with open(log_path, encoding='utf-8', errors='replace') as f:
            lines = [line.rstrip('\n') for line in f if line.strip()]
    except FileNotFoundError:
        return '(no log: %s)' % log_path
    errors = [line for line in lines if line.startswith('error: ')]
    if errors:
        return errors[-1]
    other = [line for line in lines if not line.startswith(('make: ', 'make[')) and not line.startswith('FAILED: ')]
    return (other or lines or ['(empty log)'])[-1]


def state(log_dir, name, target, inputs=()):
    """done / failed / running / pending, from the job's .rc and .log files (written by this
    submission's job: submit removes older ones), else from the target: there and newer than
    every one of ``inputs`` (a final file and its months) is done."""
    rc = _read_rc(os.path.join(log_dir, name + '.rc'))
    if rc is not None:
        return 'failed' if rc else 'done'
    if os.path.exists(os.path.join(log_dir, name + '.log')):
        return 'running'
    if os.path.exists(target) and all(os.path.exists(p) and os.path.getmtime(p) <= os.path.getmtime(target)
                                      for p in inputs):
        return 'done'
    return 'pending'


def _read_rc(path):
    try:
        with open(path) as f:
            return int(f.read().strip() or 1)
    except FileNotFoundError:
        return None


def summary(plan):
    """(text, ok): one line per failed job with its error line, counts, the final files."""
    log = plan.log_dir
    states = [(name, state(log, name, target)) for name, target in plan.tasks]
    counts = {s: sum(1 for _, x in states if x == s) for s in ('done', 'failed', 'running', 'pending')}
    lines = ['months: %d (%s)' % (len(states), ', '.join('%d %s' % (n, s) for s, n in counts.items()))]
    for name, s in states:
        if s == 'failed':
            lines.append('FAILED %s: %s (log: %s)' % (name, error_line(os.path.join(log, name + '.log')),
                                                      os.path.join(log, name + '.log')))
    ok = counts['done'] == len(states)
    for goal, path in plan.finals:
        months = [t for name, t in plan.tasks if name.startswith(GOAL_SPLIT[goal] + '-')]
        s = state(log, goal, path, months)
        ok = ok and s == 'done'
        if s == 'pending' and counts['failed']:
            s = 'not run (a month failed)'
        detail = error_line(os.path.join(log, goal + '.log')) if s == 'failed' else path
        lines.append('%s: %s (%s)' % (goal, s, detail))
    return '\n'.join(lines) + '\n', ok
