"""The command line, run two ways: in a real process (``python -m ghostnets``, what a user runs) and through
``ghostnets.cli.main`` in the test's own process (the same parsing and error handling, without 3 s of imports)."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path


def in_subprocess(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "ghostnets", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def in_process(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
    from ghostnets.cli import main

    stdout, stderr, before = io.StringIO(), io.StringIO(), os.getcwd()
    if cwd is not None:
        os.chdir(cwd)  # contextlib.chdir is Python 3.11's
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = main([str(a) for a in args])
    except SystemExit as e:  # argparse's refusals
        code = e.code
    finally:
        os.chdir(before)
    return subprocess.CompletedProcess(list(args), code, stdout.getvalue(), stderr.getvalue())
