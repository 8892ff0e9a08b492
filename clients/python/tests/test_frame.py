"""Offline tests of the client: result rows to a DataFrame, and the address and TLS checks.
No coordinator needed: python -m unittest discover -s clients/python/tests -p 'test_frame.py'
"""

import math
import sys

import pandas as pd
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from asdsweep_client import RESULT_COLUMNS, AsdsweepError, Client, results_frame  # noqa: E402
from asdsweep_client.v1 import common_pb2, sweep_pb2  # noqa: E402


def row(key, state="succeeded", metrics=None, error=""):
    r = sweep_pb2.ResultRow(job_key=key, kind="ae", stage="eval", family="ae", config="small", device="fan",
                            seed=3, state=state, attempts=2, error=error, worker="w1")
    if metrics is not None:
        r.metrics.CopyFrom(metrics)
    return r


class ResultsFrame(unittest.TestCase):
    def test_columns_types_and_missing_values(self):
        m = common_pb2.JobMetrics(proxy_metric="ae_l1", proxy_value=0.25, md_auc=0.75,
                                  proxy_direction=common_pb2.LOWER_IS_BETTER,
                                  extra_json='{"epochs": 4}', provenance_json='{"backend": "flex"}')
        m.metrics.add(name="si_sdr_0db", value=7.5, direction=common_pb2.HIGHER_IS_BETTER)
        m.metrics.add(name="not_measured")  # no value: NaN
        frame = results_frame([row("a", metrics=m), row("b", state="dead", error="boom")])
        self.assertEqual(list(frame.columns),
                         RESULT_COLUMNS + ["not_measured", "si_sdr_0db", "extra", "provenance"])
        a, b = frame.iloc[0], frame.iloc[1]
        self.assertEqual((a["job"], a["state"], a["attempts"], a["seed"]), ("a", "succeeded", 2, 3))
        self.assertEqual(a["proxy_metric"], "ae_l1")
        self.assertEqual(a["proxy_direction"], "lower_is_better")
        self.assertEqual((a["proxy_value"], a["md_auc"], a["si_sdr_0db"]), (0.25, 0.75, 7.5))
        self.assertTrue(math.isnan(a["lp_in_auc"]) and math.isnan(a["not_measured"]))
        self.assertTrue(pd.isna(a["error"]))  # missing (None, or NaN in pandas 3's str columns)
        self.assertEqual(a["extra"], {"epochs": 4})
        self.assertEqual(a["provenance"], {"backend": "flex"})
        self.assertEqual(b["error"], "boom")
        self.assertTrue(pd.isna(b["proxy_metric"]))
        self.assertTrue(math.isnan(b["proxy_value"]) and math.isnan(b["si_sdr_0db"]))
        self.assertEqual(str(frame["attempts"].dtype), "int64")
        self.assertEqual(str(frame["md_auc"].dtype), "float64")

    def test_no_rows_still_have_the_columns(self):
        frame = results_frame([])
        self.assertEqual(len(frame), 0)
        self.assertEqual(list(frame.columns), RESULT_COLUMNS + ["extra", "provenance"])

    def test_a_named_metric_that_clashes_with_a_column_is_prefixed(self):
        m = common_pb2.JobMetrics(proxy_metric="x")
        m.metrics.add(name="md_auc", value=0.5)
        frame = results_frame([row("a", metrics=m)])
        self.assertIn("metric:md_auc", frame.columns)
        self.assertTrue(math.isnan(frame.iloc[0]["md_auc"]))


class Addresses(unittest.TestCase):
    def test_tls_files_with_a_plain_text_address_are_refused(self):
        with self.assertRaisesRegex(AsdsweepError, "plain text: use https://h:1"):
            Client("h:1", tls_ca="ca.pem")

    def test_a_client_certificate_needs_its_key(self):
        with self.assertRaisesRegex(AsdsweepError, "both tls_cert and tls_key"):
            Client("https://h:1", tls_cert="c.pem")

    def test_unknown_scheme_and_unreadable_ca_are_named(self):
        with self.assertRaisesRegex(AsdsweepError, "bad coordinator address 'grpc://h:1'"):
            Client("grpc://h:1")
        with self.assertRaisesRegex(AsdsweepError, "cannot read the CA certificate /nonexistent/ca.pem"):
            Client("https://h:1", tls_ca="/nonexistent/ca.pem")

    def test_an_unreachable_coordinator_is_named(self):
        import socket
        with socket.socket() as s:  # a port nothing listens on
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with Client(f"127.0.0.1:{port}", timeout=5) as c:
            with self.assertRaisesRegex(AsdsweepError, f"cannot reach coordinator at 127.0.0.1:{port}"):
                c.status()

    def test_a_missing_spec_file_is_named(self):
        with Client("127.0.0.1:1") as c:
            with self.assertRaisesRegex(AsdsweepError, "cannot read the spec no-such-spec.toml"):
                c.launch("no-such-spec.toml")


if __name__ == "__main__":
    unittest.main()
