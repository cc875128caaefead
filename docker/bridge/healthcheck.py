"""Container health check of the bridge image: GET /healthz on ``listen.http``.

Exit 0 when the bridge answers 200 (listeners bound, AMI logged in when enabled), 1
otherwise, printing the answer either way. The address comes from the same configuration
the bridge runs with (the file in AGI_BRIDGE_CONFIG_FILE plus the AGI_BRIDGE_* environment
overrides), so a changed ``listen.http`` needs no change here. A wildcard listener
(0.0.0.0, ::) is asked on the loopback address.

    python healthcheck.py [CONFIG_FILE]
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

from agi_bridge.config import load, split_hostport

DEFAULT_CONFIG = "/etc/agi-bridge/agi-bridge.yaml"
TIMEOUT_S = 4.0


def healthz_url(config_file: str | None) -> str:
    cfg = load(config_file)
    if not cfg.listen.http:
        raise SystemExit("healthcheck: listen.http is off; nothing to check")
    host, port = split_hostport(cfg.listen.http)
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/healthz"


def main(argv: list[str]) -> int:
    config_file = argv[1] if len(argv) > 1 else os.environ.get("AGI_BRIDGE_CONFIG_FILE")
    if config_file is None and os.path.exists(DEFAULT_CONFIG):
        config_file = DEFAULT_CONFIG
    url = healthz_url(config_file)
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            print(f"{url}: {response.status} {response.read().decode(errors='replace')}")
            return 0
    except urllib.error.HTTPError as exc:
        print(f"{url}: {exc.code} {exc.read().decode(errors='replace')}")
    except OSError as exc:
        print(f"{url}: {exc}")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
