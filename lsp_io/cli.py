"""The one entry point every command line goes through: what the user did wrong ends in one line
on stderr and a documented exit status, never a traceback.

Exit statuses (the same for every script and `python -m` module; README "Exit status"):
  0    done
  1    the command's own failure (a demo stage, a download that did not verify, ...)
  2    bad input or an unusable file: flags, a missing or unreadable input, an output that cannot
       be written, input that is not UTF-8 text
  3, 4 LSP_train.py only: a non-finite loss; a checkpoint that could not be written
  130  interrupted (Ctrl-C; 143 for SIGTERM where a script handles it)
  141  stdout closed by its reader (`... | head -1`), as a shell reports SIGPIPE; nothing printed
Anything else is a bug and keeps its traceback.

Usage: decorate a script's `main(argv=None)` with `@command("decode.py")`; it still returns the
status (tests call it in-process), and the script ends with `sys.exit(main())`.
"""
from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

OK, FAILED, BAD_INPUT, INTERRUPTED, BROKEN_PIPE = 0, 1, 2, 130, 141

# Set by the `dialogpt` dispatcher ("dialogpt decode"): messages name the command the user typed.
invoked_as: str | None = None


def prog_name(script: str) -> str:
    """The name a message should use: the `dialogpt` subcommand when run that way, else `script`."""
    return invoked_as or script


class UsageError(ValueError):
    """A user error found before the work starts; the message is the whole story (exit 2)."""


def _quiet_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush of a closed pipe stays silent."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def describe(e: BaseException) -> str:
    """One line for an error a user can act on."""
    if isinstance(e, UnicodeDecodeError):
        return f"input is not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start}); binary input is refused"
    if isinstance(e, OSError) and e.filename is not None and e.strerror:
        return f"{e.filename}: {e.strerror}"
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def run(main, prog: str, argv=None, user_errors: tuple = ()) -> int:
    """main(argv) under the rules above; returns the exit status. `user_errors` are the caller's
    own exception classes that mean bad input (exit 2), besides OSError and UnicodeDecodeError."""
    try:
        code = main(argv)
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return OK if code is None else code
    except BrokenPipeError:
        _quiet_stdout()
        return BROKEN_PIPE
    except KeyboardInterrupt:
        print(f"\n{prog}: interrupted", file=sys.stderr, flush=True)
        return INTERRUPTED
    except (UsageError, UnicodeDecodeError, OSError, *user_errors) as e:
        print(f"{prog}: error: {describe(e)}", file=sys.stderr, flush=True)
        return BAD_INPUT


def command(prog: str, user_errors: tuple = ()):
    """Decorator: `main(argv=None)` run under `run` (see the module docstring)."""
    def wrap(main):
        @functools.wraps(main)
        def wrapped(argv=None):
            return run(main, prog_name(prog), argv, user_errors)
        return wrapped
    return wrap


def check_writable(*paths) -> None:
    """Refuse (UsageError) an output whose folder is missing or not writable, before any slow work."""
    for path in paths:
        if path is None or str(path) == "-":
            continue
        folder = Path(path).resolve().parent
        if not folder.is_dir():
            raise UsageError(f"{path}: cannot write: folder {folder} does not exist")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise UsageError(f"{path}: cannot write: folder {folder} is not writable")


def check_readable(*paths) -> None:
    """Refuse (UsageError) an input file that is missing or not a readable file, before any slow work."""
    for path in paths:
        if path is None or str(path) == "-":
            continue
        p = Path(path)
        if not p.exists():
            raise UsageError(f"{path}: no such file")
        if not os.access(p, os.R_OK):
            raise UsageError(f"{path}: not readable")
