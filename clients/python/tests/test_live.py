"""Integration test against a live coordinator with at least one worker attached.

    ASDSWEEP_TEST_COORDINATOR=127.0.0.1:7070 ASDSWEEP_TOKEN=... \\
        python -m unittest discover -s clients/python/tests -p 'test_live.py'

scripts/test-python-client.sh starts a coordinator and two workers and runs it. Without
ASDSWEEP_TEST_COORDINATOR the test is skipped (and says so). TLS: ASDSWEEP_TLS_CA etc., as
the Client reads them.
"""

import os
import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from asdsweep_client import RESULT_COLUMNS, Client  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
SPEC = ROOT / "sweeps" / "noop-demo.toml"
COORDINATOR = os.environ.get("ASDSWEEP_TEST_COORDINATOR")


@unittest.skipUnless(COORDINATOR, "set ASDSWEEP_TEST_COORDINATOR to a live coordinator (with a worker) to run it")
class LiveCoordinator(unittest.TestCase):
    def test_launch_wait_and_read_the_noop_demo_into_a_dataframe(self):
        with Client(COORDINATOR) as c:
            # Launching is idempotent: the spec as a path, then as text, is one sweep (on a
            # coordinator used before, one launched then: `created` may be False already).
            first = c.launch(SPEC)
            again = c.launch(SPEC.read_text())
            self.assertEqual((again.sweep_id, again.created), (first.sweep_id, False))
            # force_new: a sweep of its own, whatever ran before. The checks below are on it.
            launched = c.launch(SPEC, force_new=True)
            self.assertTrue(launched.created)
            self.assertNotEqual(launched.sweep_id, first.sweep_id)
            self.assertEqual(launched.name, "noop-demo")
            # 3 machine types x 2 seeds x 2 configs, a train and an eval job each.
            self.assertEqual((first.jobs, launched.jobs), (24, 24))

            timeout = float(os.environ.get("ASDSWEEP_TEST_TIMEOUT_S", "120"))
            final = c.wait(launched.sweep_id, timeout=timeout)
            self.assertEqual(final.state, "finished")
            self.assertEqual(c.counts(launched.sweep_id), {"succeeded": 24})

            frame = c.results(launched.sweep_id)
            self.assertEqual(len(frame), 24)
            self.assertEqual(list(frame.columns)[: len(RESULT_COLUMNS)], RESULT_COLUMNS)
            self.assertEqual(set(frame["state"]), {"succeeded"})
            self.assertEqual(set(frame["proxy_metric"]), {"noop"})
            self.assertEqual(set(frame["config"]), {"small", "large"})
            self.assertEqual(set(frame["stage"]), {"train", "eval"})
            self.assertEqual(set(frame["seed"]), {1, 2})
            self.assertTrue(frame["job"].is_unique)
            self.assertTrue(frame["worker"].str.len().gt(0).all(), "every job names the worker that ran it")
            # `large` fails once on purpose (fail_times = 1) and succeeds on its retry.
            self.assertEqual(set(frame.loc[frame["config"] == "large", "attempts"]), {2})
            self.assertEqual(set(frame.loc[frame["config"] == "small", "attempts"]), {1})
            # A sweep named by name is the newest of that name: the forced one.
            self.assertEqual(c.sweep_status("noop-demo").sweep_id, launched.sweep_id)

            # The idempotent one ran too (the workers take jobs of every sweep).
            c.wait(first.sweep_id, timeout=timeout)
            self.assertEqual(len(c.results(first.sweep_id)), 24)

    def test_an_unknown_sweep_is_named(self):
        with Client(COORDINATOR) as c:
            with self.assertRaisesRegex(Exception, "not found"):
                c.results("no-such-sweep-anywhere")


if __name__ == "__main__":
    unittest.main()
