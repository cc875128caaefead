"""scripts/lib/apt.sh: the install scripts wait for a busy apt instead of failing at once.

A real POSIX lock (the kind apt and dpkg take) is held on a scratch file by this test
process; the shell function finds its holder through /proc/locks, waits, and gives up with
a message naming the pid once APT_LOCK_WAIT is over.
"""

from __future__ import annotations

import fcntl
import os
import re
import subprocess
import threading
import time
from pathlib import Path

from tests.docker.helpers import SCRIPTS

APT_SH = SCRIPTS / "lib" / "apt.sh"


def wait_for_locks(lock_file: Path, limit: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["/bin/sh", "-c", f'. "{APT_SH}"; apt_wait_for_locks'],
        env={**os.environ, "APT_LOCK_FILES": str(lock_file), "APT_LOCK_WAIT": str(limit)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_free_locks_do_not_wait(tmp_path: Path) -> None:
    lock = tmp_path / "lock-frontend"
    lock.write_text("")
    t0 = time.monotonic()
    res = wait_for_locks(lock, 30)
    assert res.returncode == 0 and res.stderr == ""
    assert time.monotonic() - t0 < 5


def test_waits_while_apt_is_busy_then_goes_on(tmp_path: Path) -> None:
    lock = tmp_path / "lock-frontend"
    with lock.open("w") as held:
        fcntl.lockf(held, fcntl.LOCK_EX)
        threading.Timer(2.0, lambda: fcntl.lockf(held, fcntl.LOCK_UN)).start()
        t0 = time.monotonic()
        res = wait_for_locks(lock, 30)
        waited = time.monotonic() - t0
    assert res.returncode == 0, res.stderr
    assert waited >= 1.5, waited
    assert f"apt: waiting for {lock} (held by pid {os.getpid()}" in res.stderr


def test_gives_up_after_apt_lock_wait_naming_the_holder(tmp_path: Path) -> None:
    lock = tmp_path / "lock"
    with lock.open("w") as held:
        fcntl.lockf(held, fcntl.LOCK_EX)
        res = wait_for_locks(lock, 1)
    assert res.returncode == 1
    assert re.search(rf"{lock} is still locked by pid {os.getpid()} .* after 1 s", res.stderr)


def test_the_install_scripts_go_through_the_wait() -> None:
    for name in ("install-system-deps.sh", "docker-engine.sh"):
        text = (SCRIPTS / name).read_text()
        assert re.search(r'^\. "\$here/lib/apt\.sh"$', text, re.M), name
        code = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#")]
        for line in code:
            # apt-get only through apt_get (the docker plugin download uses a private
            # apt state with its own lists and cache: no lock of the host's apt)
            if re.search(r"(^|[\s;(])apt-get\s+(install|update|upgrade)", line):
                raise AssertionError(f"{name}: {line.strip()} does not wait for apt's locks")
