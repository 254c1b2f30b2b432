"""``python -m reddit_extractor slurm submit|status``: the Makefile as a SLURM job array.

    submit [flags] [VAR=value ...]   one array task per month not yet built, then the final
                                     goals (merge, refs) with --dependency=afterok on the array,
                                     then a summary job (afterany) writing <logs>/summary.txt
    status [--logs DIR] [VAR=value ...]   the same summary, now, from the output files

The make variables are the Makefile's (SIZE, S, K, T, DATA, ...); each task runs the Makefile's
own per-month target, so a month already built is skipped at submission and again by make.
"""
import argparse
import os
import shlex
import subprocess
import sys
import time

from ..outputs import remove_quietly, write_atomic
from .plan import GOAL_SPLIT, RX_DIR, Plan, PlanError, build_plan, summary

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'job.sbatch')
SUMMARY = 'summary.txt'


def parser():
    p = argparse.ArgumentParser(prog='python -m reddit_extractor slurm',
                                description='Run the Reddit extraction Makefile as a SLURM job array.')
    sub = p.add_subparsers(dest='command', required=True)
    s = sub.add_parser('submit', help='submit the months not yet built, the merge and the refs')
    s.add_argument('--goals', help='comma-separated make goals among %s (default: the Makefile\'s all: '
                   'train, plus refs with SIZE=full)' % ', '.join(GOAL_SPLIT))
    s.add_argument('--partition', help='sbatch --partition (default: the cluster\'s default)')
    s.add_argument('--time', default='04:00:00', help='time limit per month (default 04:00:00)')
    s.add_argument('--final_time', default='02:00:00', help='time limit of the merge and refs jobs')
    s.add_argument('--mem', default='16G', help='memory per month (default 16G: about 1 GB per million '
                   'comments of the month, docs/reddit.md)')
    s.add_argument('--cpus', type=int, default=4, help='CPUs per month, also make\'s WORKERS (default 4)')
    s.add_argument('--max_running', type=int, default=0, help='at most this many months at once (array %%N)')
    s.add_argument('--sbatch', action='append', default=[], metavar='ARG',
                   help='extra sbatch argument, e.g. --sbatch=--account=abc (repeatable)')
    s.add_argument('--wait', action='store_true', help='wait for the summary job; exit 1 when a job failed')
    s.add_argument('--dry_run', action='store_true', help='print the sbatch commands, submit nothing')
    st = sub.add_parser('status', help='done/failed/running/pending per month, from the files')
    st.add_argument('--write', action='store_true', help='also write <logs>/summary.txt (the summary job)')
    for q in (s, st):
        q.add_argument('--logs', help='log folder (default: $(T)/slurm)')
        q.add_argument('make_vars', nargs='*', metavar='VAR=value', help='make variables (SIZE=full T=...)')
    return p


def sbatch(args, dry_run):
    """Run sbatch (--parsable); return the job id."""
    cmd = ['sbatch', '--parsable'] + args
    if dry_run:
        print(shlex.join(cmd))
        sbatch.n_dry += 1
        return 'JOB%d' % sbatch.n_dry
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise PlanError('sbatch failed: %s' % (r.stderr.strip() or 'exit %d' % r.returncode))
    return r.stdout.strip().splitlines()[0].split(';')[0]


sbatch.n_dry = 0


def wait_for(job_id):
    """Until squeue no longer lists the job. Polled every 0.5 s at first, then every tenth of the
    time waited so far (at most 30 s): prompt for short runs, light on the controller for long
    ones (sbatch --wait backs off to a poll every 10+ s at once)."""
    start, errors = time.monotonic(), 0
    while True:
        r = subprocess.run(['squeue', '-h', '-o', '%i', '-j', job_id], capture_output=True, text=True)
        if r.returncode == 0 and not r.stdout.strip():
            return
        if r.returncode != 0 and 'Invalid job id' in r.stderr:  # already purged
            return
        errors = errors + 1 if r.returncode != 0 else 0
        if errors == 10:  # a busy controller times out now and then; ten in a row is not that
            raise PlanError('squeue failed 10 times: %s' % r.stderr.strip())
        time.sleep(min(30.0, max(0.5, (time.monotonic() - start) / 10)))


def fetch_inputs(make_vars, splits):
    """Key files and test ids, here and now: once, before tasks that would race for them, and
    on this machine (compute nodes often cannot download)."""
    if splits:
        r = subprocess.run(['make', '-s', '-C', RX_DIR] + make_vars + ['inputs-' + s for s in sorted(splits)])
        if r.returncode != 0:
            raise PlanError('could not fetch the key files (make inputs-%s failed)' % ' inputs-'.join(sorted(splits)))


def submit(a):
    goals = a.goals.split(',') if a.goals else None
    make_vars = list(a.make_vars)
    names = {v.split('=', 1)[0] for v in make_vars}
    if 'PYTHON' not in names:  # tasks use this interpreter (the cluster shares its environment)
        make_vars.append('PYTHON=' + sys.executable)
    if 'WORKERS' not in names:
        make_vars.append('WORKERS=%d' % a.cpus)
    plan = build_plan(make_vars, goals, a.logs)
    log = plan.log_dir
    todo = [[name, target] for name, target in plan.tasks if not os.path.exists(target)]
    vars_file = os.path.join(log, 'make_vars.txt')
    if not a.dry_run:
        fetch_inputs(make_vars, {name.split('-')[0] for name, _ in todo})
        os.makedirs(log, exist_ok=True)
        for name, _ in todo + plan.finals:  # a stale .rc would read as this run's
            remove_quietly(os.path.join(log, name + '.rc'))
            remove_quietly(os.path.join(log, name + '.log'))
        remove_quietly(os.path.join(log, SUMMARY))
        plan.save()
        write_atomic(vars_file, ''.join(v + '\n' for v in make_vars))
    common = ['--chdir', RX_DIR] + (['--partition', a.partition] if a.partition else []) + a.sbatch
    print('%d of %d months already built, %d to run; logs in %s' % (
        len(plan.tasks) - len(todo), len(plan.tasks), len(todo), log))
    deps = []
    if todo:
        tasks_file = os.path.join(log, 'tasks.txt')
        if not a.dry_run:
            write_atomic(tasks_file, ''.join('%s\t%s\n' % (n, t) for n, t in todo))
        array = '1-%d' % len(todo) + ('%%%d' % a.max_running if a.max_running else '')
        jid = sbatch(common + ['--job-name', 'reddit-months', '--array', array, '--time', a.time,
                               '--mem', a.mem, '--cpus-per-task', str(a.cpus),
                               '--output', os.path.join(log, 'slurm-%A_%a.out'),
                               SCRIPT, RX_DIR, vars_file, log, tasks_file], a.dry_run)
        print('months: job array %s (%d tasks)' % (jid, len(todo)))
        deps.append(jid)
    finals = []
    for goal, _ in plan.finals:
        after = ['--dependency', 'afterok:' + ':'.join(deps), '--kill-on-invalid-dep', 'yes'] if deps else []
        jid = sbatch(common + after + ['--job-name', 'reddit-' + goal, '--time', a.final_time, '--mem', a.mem,
                                       '--cpus-per-task', '1', '--output', os.path.join(log, 'slurm-%j.out'),
                                       SCRIPT, RX_DIR, vars_file, log, '-', goal, goal], a.dry_run)
        print('%s: job %s%s' % (goal, jid, ' (after the months)' if deps else ''))
        finals.append(jid)
    status = ' '.join(map(shlex.quote, [sys.executable, '-m', 'reddit_extractor', 'slurm', 'status',
                                        '--logs', log, '--write']))
    jid = sbatch(common + ['--dependency', 'afterany:' + ':'.join(deps + finals), '--job-name', 'reddit-summary',
                           '--time', '00:10:00', '--mem', '1G', '--cpus-per-task', '1',
                           '--output', os.path.join(log, 'slurm-%j.out'),
                           '--wrap', 'PYTHONPATH=%s exec %s' % (shlex.quote(os.path.dirname(RX_DIR)), status)],
                 a.dry_run)
    print('summary: job %s -> %s' % (jid, os.path.join(log, SUMMARY)))
    print('status any time: python -m reddit_extractor slurm status --logs %s' % shlex.quote(log))
    if a.wait and not a.dry_run:
        wait_for(jid)
        text, ok = summary(plan)
        print(text, end='')
        return 0 if ok else 1
    return 0


def status(a):
    plan = Plan.load(a.logs) if a.logs else Plan.load(build_plan(a.make_vars).log_dir)
    text, ok = summary(plan)
    if a.write:
        write_atomic(os.path.join(plan.log_dir, SUMMARY), text)
    print(text, end='')
    return 0 if ok else 1


def main(argv):
    a = parser().parse_args(argv)
    try:
        return submit(a) if a.command == 'submit' else status(a)
    except PlanError as e:
        print('error: %s' % e, file=sys.stderr)
        return 1
