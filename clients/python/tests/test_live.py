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
            # A fresh sweep every time, so that a coordinator used before gives the same answer.
            launched = c.launch(SPEC, force_new=True)
            self.assertTrue(launched.created)
            self.assertEqual(launched.name, "noop-demo")
            # 3 machine types x 2 seeds x 2 configs, a train and an eval job each.
            self.assertEqual(launched.jobs, 24)

            # The same spec again, not forced: the same sweep back, nothing created.
            again = c.launch(SPEC.read_text())
            self.assertEqual((again.sweep_id, again.created), (launched.sweep_id, False))

            final = c.wait(launched.sweep_id, timeout=float(os.environ.get("ASDSWEEP_TEST_TIMEOUT_S", "120")))
            self.assertEqual(final.state, "finished")
            self.assertEqual(c.counts(launched.sweep_id), {"succeeded": 24})

            frame = c.results(launched.sweep_id)
            self.assertEqual(len(frame), 24)
            self.assertEqual(list(frame.columns)[: len(RESULT_COLUMNS)], RESULT_COLUMNS)
            self.assertEqual(set(frame["state"]), {"succeeded"})
            self.assertEqual(set(frame["proxy_metric"]), {"noop"})
            self.assertEqual(set(frame["family"]), {"noop"})
            self.assertEqual(set(frame["config"]), {"small", "large"})
            self.assertEqual(set(frame["stage"]), {"train", "eval"})
            self.assertEqual(set(frame["seed"]), {1, 2})
            self.assertTrue(frame["job"].is_unique)
            self.assertTrue(frame["worker"].str.len().gt(0).all(), "every job names the worker that ran it")
            # `large` fails once on purpose (fail_times = 1) and succeeds on its retry.
            self.assertEqual(set(frame.loc[frame["config"] == "large", "attempts"]), {2})
            self.assertEqual(set(frame.loc[frame["config"] == "small", "attempts"]), {1})
            # Results by name are the newest sweep of that name: this one.
            self.assertEqual(sorted(c.results("noop-demo")["job"]), sorted(frame["job"]))

    def test_an_unknown_sweep_is_named(self):
        with Client(COORDINATOR) as c:
            with self.assertRaisesRegex(Exception, "not found"):
                c.results("no-such-sweep-anywhere")


if __name__ == "__main__":
    unittest.main()
