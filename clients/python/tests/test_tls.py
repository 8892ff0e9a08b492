"""The client's TLS, mutual TLS and token against a Python gRPC server (no asdsweep binary),
with certificates from deploy/make-certs.sh (so its output is checked too). Needs openssl;
skipped without it.

    python -m unittest discover -s clients/python/tests -p 'test_tls.py'
"""

import shutil
import subprocess
import sys
import tempfile
import unittest
from concurrent import futures
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from asdsweep_client import AsdsweepError, Client  # noqa: E402
from asdsweep_client.v1 import sweep_pb2, sweep_pb2_grpc  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
TOKEN = "operator-secret"


class FakeSweeps(sweep_pb2_grpc.SweepServiceServicer):
    """Answers Status with one sweep, for callers with the right bearer token."""

    def Status(self, request, context):
        if dict(context.invocation_metadata()).get("authorization") != f"Bearer {TOKEN}":
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong token")
        return sweep_pb2.StatusResponse(sweeps=[sweep_pb2.SweepStatus(sweep_id=7, name="tls-demo", state="active")])


@unittest.skipUnless(shutil.which("openssl"), "needs openssl for deploy/make-certs.sh")
class Tls(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        d = Path(cls.tmp.name)
        # The server certificate names only asdsweep-coordinator: reaching it as 127.0.0.1
        # needs tls_domain.
        subprocess.run([str(ROOT / "deploy" / "make-certs.sh"), str(d), "asdsweep-coordinator"],
                       check=True, capture_output=True)
        cls.ca, cls.cert, cls.key = d / "ca.crt", d / "client.crt", d / "client.key"
        credentials = grpc.ssl_server_credentials(
            [((d / "server.key").read_bytes(), (d / "server.crt").read_bytes())],
            root_certificates=cls.ca.read_bytes(), require_client_auth=True)
        cls.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        sweep_pb2_grpc.add_SweepServiceServicer_to_server(FakeSweeps(), cls.server)
        cls.port = cls.server.add_secure_port("127.0.0.1:0", credentials)
        cls.server.start()
        cls.address = f"https://127.0.0.1:{cls.port}"

    @classmethod
    def tearDownClass(cls):
        cls.server.stop(None)
        cls.tmp.cleanup()

    def client(self, **kw):
        args = dict(address=self.address, token=TOKEN, tls_ca=str(self.ca), tls_cert=str(self.cert),
                    tls_key=str(self.key), tls_domain="asdsweep-coordinator", timeout=5)
        args.update(kw)
        return Client(**args)

    def test_mutual_tls_with_the_token_is_answered(self):
        with self.client() as c:
            self.assertEqual(c.sweep_status("tls-demo").sweep_id, 7)

    def test_a_wrong_token_is_refused_with_a_hint(self):
        with self.client(token="nope") as c:
            with self.assertRaisesRegex(AsdsweepError, "refused the token") as e:
                c.status()
            self.assertEqual(e.exception.code, grpc.StatusCode.UNAUTHENTICATED)

    def test_the_name_checked_must_be_in_the_certificate(self):
        with self.client(tls_domain=None) as c:  # 127.0.0.1 is not in it
            with self.assertRaises(AsdsweepError) as e:
                c.status()
            self.assertEqual(e.exception.code, grpc.StatusCode.UNAVAILABLE)

    def test_without_a_client_certificate_the_server_refuses(self):
        with self.client(tls_cert=None, tls_key=None) as c:
            with self.assertRaises(AsdsweepError) as e:
                c.status()
            self.assertEqual(e.exception.code, grpc.StatusCode.UNAVAILABLE)

    def test_a_plain_text_client_gets_no_answer(self):
        with self.client(address=f"127.0.0.1:{self.port}", tls_ca=None, tls_cert=None, tls_key=None) as c:
            with self.assertRaises(AsdsweepError) as e:
                c.status()
            self.assertEqual(e.exception.code, grpc.StatusCode.UNAVAILABLE)


if __name__ == "__main__":
    unittest.main()
