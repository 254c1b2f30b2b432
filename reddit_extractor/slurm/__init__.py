"""The Makefile as a SLURM job array: ``python -m reddit_extractor slurm submit|status`` (submit.py),
the batch script every job runs (job.sbatch), and the run's state read from its files (plan.py)."""
