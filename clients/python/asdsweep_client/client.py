"""A thin client of the coordinator's SweepService (proto/asdsweep/v1/sweep.proto).

It does what `asdsweep launch`, `status`, `results`, `cancel`, `retry` and `workers` do, and
returns result rows as a pandas DataFrame with the columns of `asdsweep results --format json`.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import grpc
import pandas as pd

from .v1 import common_pb2, sweep_pb2, sweep_pb2_grpc

# States a job does not leave on its own (coordinator/src/queue.rs, JobState::is_final).
FINAL_STATES = ("succeeded", "dead", "cancelled")
# The fixed columns of a results frame, in the order `asdsweep results --format json` gives them.
RESULT_COLUMNS = [
    "job", "state", "attempts", "family", "config", "device", "seed", "stage", "kind", "worker",
    "error", "proxy_metric", "proxy_value", "proxy_direction",
    "lp_in_auc", "lp_in_pauc", "lp_out_auc", "lp_out_pauc", "md_auc", "md_pauc",
]
_ASD_FIELDS = ("lp_in_auc", "lp_in_pauc", "lp_out_auc", "lp_out_pauc", "md_auc", "md_pauc")
_DIRECTIONS = {
    common_pb2.HIGHER_IS_BETTER: "higher_is_better",
    common_pb2.LOWER_IS_BETTER: "lower_is_better",
}
# A large sweep's results come in one message: allow more than gRPC's default 4 MiB.
_MAX_MESSAGE = 512 * 1024 * 1024


class AsdsweepError(RuntimeError):
    """A call the coordinator refused or could not answer; `code` is the grpc.StatusCode."""

    def __init__(self, message: str, code: Optional[grpc.StatusCode] = None):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Launched:
    """What a launch did: `created` is False when the same spec had been launched before and
    that sweep was returned (launching is idempotent unless `force_new`)."""

    sweep_id: int
    name: str
    created: bool
    jobs: int


def _env(name: str) -> Optional[str]:
    value = os.environ.get(name)
    return value if value else None


def _read(path: Optional[str], what: str) -> Optional[bytes]:
    if path is None:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise AsdsweepError(f"cannot read the {what} {path}: {e.strerror}") from e


class Client:
    """A connection to a coordinator, for operators.

    Every argument left out is taken from the environment variable the `asdsweep` command
    line reads, then from a default:

    - address (ASDSWEEP_COORDINATOR, default 127.0.0.1:7070): `host:port` or `http://host:port`
      for plain text, `https://host:port` for TLS;
    - token (ASDSWEEP_TOKEN): the operator token (`serve --operator-token`, or `--token`);
    - tls_ca (ASDSWEEP_TLS_CA): PEM file of the CA that signed the coordinator's certificate
      (default: the system's roots);
    - tls_cert, tls_key (ASDSWEEP_TLS_CERT, ASDSWEEP_TLS_KEY): this client's certificate and
      key, for a coordinator that requires client certificates (mutual TLS);
    - tls_domain (ASDSWEEP_TLS_DOMAIN): the name to check in the server's certificate instead
      of the address's host.

    `timeout` bounds each call, in seconds. Use it as a context manager, or call close().
    """

    def __init__(
        self,
        address: Optional[str] = None,
        token: Optional[str] = None,
        tls_ca: Optional[str] = None,
        tls_cert: Optional[str] = None,
        tls_key: Optional[str] = None,
        tls_domain: Optional[str] = None,
        timeout: float = 60.0,
    ):
        address = address or _env("ASDSWEEP_COORDINATOR") or "127.0.0.1:7070"
        token = token if token is not None else _env("ASDSWEEP_TOKEN")
        tls_ca = tls_ca or _env("ASDSWEEP_TLS_CA")
        tls_cert = tls_cert or _env("ASDSWEEP_TLS_CERT")
        tls_key = tls_key or _env("ASDSWEEP_TLS_KEY")
        tls_domain = tls_domain or _env("ASDSWEEP_TLS_DOMAIN")

        if address.startswith("https://"):
            tls, target = True, address[len("https://"):]
        elif address.startswith("http://"):
            tls, target = False, address[len("http://"):]
        elif "://" in address:
            raise AsdsweepError(f"bad coordinator address {address!r}: expected host:port, http://host:port or https://host:port")
        else:
            tls, target = False, address
        target = target.rstrip("/")
        if not target:
            raise AsdsweepError(f"bad coordinator address {address!r}: no host:port")
        if not tls and (tls_ca or tls_cert or tls_key):
            raise AsdsweepError(
                f"TLS files given but the coordinator address {address!r} is plain text: use https://{target}")
        if bool(tls_cert) != bool(tls_key):
            raise AsdsweepError("mutual TLS needs both tls_cert and tls_key (ASDSWEEP_TLS_CERT, ASDSWEEP_TLS_KEY)")
        if token is not None and (not token.isascii() or not token.isprintable()):
            raise AsdsweepError("the token must be printable ASCII")

        options = [
            ("grpc.max_receive_message_length", _MAX_MESSAGE),
            ("grpc.max_send_message_length", _MAX_MESSAGE),
        ]
        if tls:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=_read(tls_ca, "CA certificate"),
                private_key=_read(tls_key, "client key"),
                certificate_chain=_read(tls_cert, "client certificate"),
            )
            if tls_domain:
                options.append(("grpc.ssl_target_name_override", tls_domain))
            self._channel = grpc.secure_channel(target, credentials, options=options)
        else:
            self._channel = grpc.insecure_channel(target, options=options)
        self.address = address
        self.timeout = timeout
        self._metadata = (("authorization", f"Bearer {token}"),) if token is not None else ()
        self._stub = sweep_pb2_grpc.SweepServiceStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _call(self, method: str, request):
        try:
            return getattr(self._stub, method)(request, timeout=self.timeout, metadata=self._metadata)
        except grpc.RpcError as e:
            code, details = e.code(), e.details()
            hint = {
                grpc.StatusCode.UNAVAILABLE: f"cannot reach coordinator at {self.address}",
                grpc.StatusCode.DEADLINE_EXCEEDED: f"coordinator at {self.address} did not answer within {self.timeout} s",
                grpc.StatusCode.UNAUTHENTICATED: "the coordinator refused the token (pass token= or set ASDSWEEP_TOKEN to the operator token)",
                grpc.StatusCode.PERMISSION_DENIED: "this token's role may not do that (operators need the operator token)",
            }.get(code)
            message = f"{method}: {code.name}: {details}"
            raise AsdsweepError(f"{hint}: {message}" if hint else message, code) from None

    # --- SweepService ------------------------------------------------------------------------

    def launch(self, spec: Union[str, os.PathLike], force_new: bool = False) -> Launched:
        """Launches a sweep spec: a path to its TOML file (str or Path), or the TOML text itself.

        The coordinator checks the spec and expands it into jobs; the spec's dataset paths are
        resolved on the workers (under their --data), not here.
        """
        if isinstance(spec, os.PathLike):
            text = _read(os.fspath(spec), "spec").decode()
        elif "\n" in spec or "=" in spec:
            text = spec
        else:
            text = _read(spec, "spec").decode()
        r = self._call("Launch", sweep_pb2.LaunchRequest(spec_toml=text, force_new=force_new))
        return Launched(sweep_id=r.sweep_id, name=r.name, created=r.created, jobs=r.jobs)

    def status(self, sweep: Optional[Union[str, int]] = None) -> sweep_pb2.StatusResponse:
        """Every sweep's status (or the one named by id or name), with the live workers."""
        return self._call("Status", sweep_pb2.StatusRequest(sweep="" if sweep is None else str(sweep)))

    def sweep_status(self, sweep: Union[str, int]) -> sweep_pb2.SweepStatus:
        """One sweep's status: job counts by state and family, throughput, ETA, dead jobs."""
        sweeps = self.status(sweep).sweeps
        if not sweeps:
            raise AsdsweepError(f"sweep {sweep!r} not found", grpc.StatusCode.NOT_FOUND)
        return sweeps[0]

    def counts(self, sweep: Union[str, int]) -> dict:
        """One sweep's jobs by state, e.g. {"pending": 3, "succeeded": 21}."""
        return {c.state: c.count for c in self.sweep_status(sweep).counts if c.count}

    def wait(self, sweep: Union[str, int], timeout: float = 3600.0, poll: float = 1.0) -> sweep_pb2.SweepStatus:
        """Waits until every job of the sweep is final (succeeded, dead or cancelled)."""
        deadline = time.monotonic() + timeout
        while True:
            s = self.sweep_status(sweep)
            open_jobs = sum(c.count for c in s.counts if c.state not in FINAL_STATES)
            if open_jobs == 0:
                return s
            if time.monotonic() > deadline:
                counts = ", ".join(f"{c.count} {c.state}" for c in s.counts if c.count)
                raise AsdsweepError(f"sweep {sweep!r} still has {open_jobs} open jobs after {timeout} s ({counts})",
                                    grpc.StatusCode.DEADLINE_EXCEEDED)
            time.sleep(poll)

    def result_rows(self, sweep: Union[str, int]) -> list:
        """A sweep's jobs as the coordinator sends them (asdsweep.v1.ResultRow messages)."""
        return list(self._call("Results", sweep_pb2.ResultsRequest(sweep=str(sweep))).rows)

    def results(self, sweep: Union[str, int]) -> pd.DataFrame:
        """A sweep's jobs with their metrics or errors, one row per job (see results_frame)."""
        return results_frame(self.result_rows(sweep))

    def cancel(self, sweep: Union[str, int]) -> int:
        """Cancels a sweep; returns how many jobs were cancelled."""
        return self._call("Cancel", sweep_pb2.CancelRequest(sweep=str(sweep))).cancelled

    def retry(self, sweep: Union[str, int], dead: bool = False) -> int:
        """Re-queues a sweep's cancelled (and with dead=True, dead) jobs; returns how many."""
        return self._call("Retry", sweep_pb2.RetryRequest(sweep=str(sweep), dead=dead)).requeued

    def workers(self, lost_within_h: float = 24.0) -> pd.DataFrame:
        """Live workers, then those lost within the last lost_within_h hours."""
        r = self._call("Workers", sweep_pb2.WorkersRequest(lost_within_ms=int(lost_within_h * 3_600_000)))
        rows = [{
            "name": w.name, "worker_id": w.worker_id, "live": w.live, "backend": w.backend, "device": w.device,
            "current_job": w.current_job if w.HasField("current_job") else None,
            "last_seen": pd.Timestamp(w.last_seen_ms, unit="ms", tz="UTC"),
            "registered_at": pd.Timestamp(w.registered_at_ms, unit="ms", tz="UTC"),
        } for w in r.workers]
        return pd.DataFrame(rows, columns=["name", "worker_id", "live", "backend", "device", "current_job",
                                           "last_seen", "registered_at"])


def _json_or_none(text: str):
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def results_frame(rows) -> pd.DataFrame:
    """Result rows as a DataFrame: the columns of RESULT_COLUMNS (as `asdsweep results --format
    json` names them; a metric a job did not report is NaN, a text it lacks (error, proxy
    metric) is missing: pd.isna() is true for it),
    then one column per further named metric any row reports (sorted; a name that clashes with
    a fixed column gets the prefix `metric:`), then `extra` and `provenance` (parsed JSON)."""
    named = sorted({m.name for r in rows if r.HasField("metrics") for m in r.metrics.metrics})
    named_columns = {n: (f"metric:{n}" if n in RESULT_COLUMNS or n in ("extra", "provenance") else n) for n in named}
    records = []
    for r in rows:
        m = r.metrics if r.HasField("metrics") else None
        rec = {
            "job": r.job_key, "state": r.state, "attempts": r.attempts, "family": r.family,
            "config": r.config, "device": r.device, "seed": r.seed, "stage": r.stage, "kind": r.kind,
            "worker": r.worker, "error": r.error or None,
            "proxy_metric": m.proxy_metric if m is not None and m.proxy_metric else None,
            "proxy_value": m.proxy_value if m is not None and m.HasField("proxy_value") else math.nan,
            "proxy_direction": _DIRECTIONS.get(m.proxy_direction) if m is not None else None,
        }
        for f in _ASD_FIELDS:
            rec[f] = getattr(m, f) if m is not None and m.HasField(f) else math.nan
        for n in named:
            rec[named_columns[n]] = math.nan
        if m is not None:
            for x in m.metrics:
                if x.HasField("value"):
                    rec[named_columns[x.name]] = x.value
        rec["extra"] = _json_or_none(m.extra_json) if m is not None else None
        rec["provenance"] = _json_or_none(m.provenance_json) if m is not None else None
        records.append(rec)
    columns = RESULT_COLUMNS + [named_columns[n] for n in named] + ["extra", "provenance"]
    frame = pd.DataFrame.from_records(records, columns=columns)
    # Whole-number columns stay integers; metric columns are floats even when all are NaN.
    for c in ("attempts", "seed"):
        frame[c] = frame[c].astype("int64")
    for c in ["proxy_value", *_ASD_FIELDS, *(named_columns[n] for n in named)]:
        frame[c] = frame[c].astype("float64")
    return frame
