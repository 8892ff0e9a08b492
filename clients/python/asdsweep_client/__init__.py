"""Python client of the asdsweep coordinator.

    from asdsweep_client import Client
    with Client("https://coordinator:7070", token="...", tls_ca="ca.crt") as c:
        sweep = c.launch("sweeps/noop-demo.toml")
        c.wait(sweep.sweep_id)
        frame = c.results(sweep.sweep_id)   # pandas DataFrame, one row per job

The generated gRPC stubs are in asdsweep_client.v1 (sweep_pb2, sweep_pb2_grpc, ...).
"""

from .client import FINAL_STATES, RESULT_COLUMNS, AsdsweepError, Client, Launched, results_frame

__all__ = ["Client", "Launched", "AsdsweepError", "results_frame", "RESULT_COLUMNS", "FINAL_STATES"]
