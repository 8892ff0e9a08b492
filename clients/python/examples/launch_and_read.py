#!/usr/bin/env python3
"""Launches a sweep, waits for it, and prints its results as a pandas DataFrame.

    python clients/python/examples/launch_and_read.py sweeps/noop-demo.toml \\
        --coordinator https://coordinator:7070 --tls-ca ca.crt     # token: ASDSWEEP_TOKEN

Every flag also reads the environment variable the asdsweep command line reads
(ASDSWEEP_COORDINATOR, ASDSWEEP_TOKEN, ASDSWEEP_TLS_CA, ...).
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

import pandas as pd  # noqa: E402

from asdsweep_client import AsdsweepError, Client  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("spec", type=Path, help="the sweep spec (TOML)")
    p.add_argument("--coordinator", help="host:port, http://host:port or https://host:port [ASDSWEEP_COORDINATOR]")
    p.add_argument("--token", help="the operator token [ASDSWEEP_TOKEN]")
    p.add_argument("--tls-ca", help="CA certificate of the coordinator (PEM) [ASDSWEEP_TLS_CA]")
    p.add_argument("--new", action="store_true", help="a fresh sweep even if this spec was launched before")
    p.add_argument("--timeout-s", type=float, default=3600, help="how long to wait for the jobs (default 3600)")
    a = p.parse_args()
    try:
        with Client(a.coordinator, token=a.token, tls_ca=a.tls_ca) as c:
            sweep = c.launch(a.spec, force_new=a.new)
            verb = "launched" if sweep.created else "already launched; reusing"
            print(f"sweep {sweep.sweep_id} \"{sweep.name}\" {verb} ({sweep.jobs} jobs)", file=sys.stderr)
            final = c.wait(sweep.sweep_id, timeout=a.timeout_s)
            print(f"{final.state}: " + ", ".join(f"{x.count} {x.state}" for x in final.counts if x.count),
                  file=sys.stderr)
            frame = c.results(sweep.sweep_id)
    except AsdsweepError as e:
        sys.exit(f"launch_and_read: {e}")
    with pd.option_context("display.width", 200, "display.max_columns", 12, "display.max_rows", 100):
        print(frame.drop(columns=["extra", "provenance"]))


if __name__ == "__main__":
    main()
