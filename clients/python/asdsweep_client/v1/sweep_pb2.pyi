from . import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LaunchRequest(_message.Message):
    __slots__ = ("spec_toml", "force_new")
    SPEC_TOML_FIELD_NUMBER: _ClassVar[int]
    FORCE_NEW_FIELD_NUMBER: _ClassVar[int]
    spec_toml: str
    force_new: bool
    def __init__(self, spec_toml: _Optional[str] = ..., force_new: _Optional[bool] = ...) -> None: ...

class LaunchResponse(_message.Message):
    __slots__ = ("sweep_id", "name", "created", "jobs")
    SWEEP_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    JOBS_FIELD_NUMBER: _ClassVar[int]
    sweep_id: int
    name: str
    created: bool
    jobs: int
    def __init__(self, sweep_id: _Optional[int] = ..., name: _Optional[str] = ..., created: _Optional[bool] = ..., jobs: _Optional[int] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ("sweep",)
    SWEEP_FIELD_NUMBER: _ClassVar[int]
    sweep: str
    def __init__(self, sweep: _Optional[str] = ...) -> None: ...

class StateCount(_message.Message):
    __slots__ = ("state", "count")
    STATE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    state: str
    count: int
    def __init__(self, state: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class DeadJob(_message.Message):
    __slots__ = ("job_key", "attempts", "error")
    JOB_KEY_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    job_key: str
    attempts: int
    error: str
    def __init__(self, job_key: _Optional[str] = ..., attempts: _Optional[int] = ..., error: _Optional[str] = ...) -> None: ...

class SweepStatus(_message.Message):
    __slots__ = ("sweep_id", "name", "state", "spec_hash", "counts", "total", "throughput_per_s", "eta_s", "dead", "created_at_ms", "families", "backend_needs")
    SWEEP_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SPEC_HASH_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    THROUGHPUT_PER_S_FIELD_NUMBER: _ClassVar[int]
    ETA_S_FIELD_NUMBER: _ClassVar[int]
    DEAD_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    FAMILIES_FIELD_NUMBER: _ClassVar[int]
    BACKEND_NEEDS_FIELD_NUMBER: _ClassVar[int]
    sweep_id: int
    name: str
    state: str
    spec_hash: str
    counts: _containers.RepeatedCompositeFieldContainer[StateCount]
    total: int
    throughput_per_s: float
    eta_s: float
    dead: _containers.RepeatedCompositeFieldContainer[DeadJob]
    created_at_ms: int
    families: _containers.RepeatedCompositeFieldContainer[FamilyProgress]
    backend_needs: _containers.RepeatedCompositeFieldContainer[BackendNeed]
    def __init__(self, sweep_id: _Optional[int] = ..., name: _Optional[str] = ..., state: _Optional[str] = ..., spec_hash: _Optional[str] = ..., counts: _Optional[_Iterable[_Union[StateCount, _Mapping]]] = ..., total: _Optional[int] = ..., throughput_per_s: _Optional[float] = ..., eta_s: _Optional[float] = ..., dead: _Optional[_Iterable[_Union[DeadJob, _Mapping]]] = ..., created_at_ms: _Optional[int] = ..., families: _Optional[_Iterable[_Union[FamilyProgress, _Mapping]]] = ..., backend_needs: _Optional[_Iterable[_Union[BackendNeed, _Mapping]]] = ...) -> None: ...

class BackendNeed(_message.Message):
    __slots__ = ("backends", "pending")
    BACKENDS_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    backends: str
    pending: int
    def __init__(self, backends: _Optional[str] = ..., pending: _Optional[int] = ...) -> None: ...

class WorkerInfo(_message.Message):
    __slots__ = ("worker_id", "name", "backend", "device", "last_seen_ms", "current_job", "live", "registered_at_ms")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_MS_FIELD_NUMBER: _ClassVar[int]
    CURRENT_JOB_FIELD_NUMBER: _ClassVar[int]
    LIVE_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    name: str
    backend: str
    device: str
    last_seen_ms: int
    current_job: str
    live: bool
    registered_at_ms: int
    def __init__(self, worker_id: _Optional[str] = ..., name: _Optional[str] = ..., backend: _Optional[str] = ..., device: _Optional[str] = ..., last_seen_ms: _Optional[int] = ..., current_job: _Optional[str] = ..., live: _Optional[bool] = ..., registered_at_ms: _Optional[int] = ...) -> None: ...

class WorkersRequest(_message.Message):
    __slots__ = ("lost_within_ms",)
    LOST_WITHIN_MS_FIELD_NUMBER: _ClassVar[int]
    lost_within_ms: int
    def __init__(self, lost_within_ms: _Optional[int] = ...) -> None: ...

class WorkersResponse(_message.Message):
    __slots__ = ("workers",)
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    workers: _containers.RepeatedCompositeFieldContainer[WorkerInfo]
    def __init__(self, workers: _Optional[_Iterable[_Union[WorkerInfo, _Mapping]]] = ...) -> None: ...

class StatusResponse(_message.Message):
    __slots__ = ("sweeps", "live_workers")
    SWEEPS_FIELD_NUMBER: _ClassVar[int]
    LIVE_WORKERS_FIELD_NUMBER: _ClassVar[int]
    sweeps: _containers.RepeatedCompositeFieldContainer[SweepStatus]
    live_workers: _containers.RepeatedCompositeFieldContainer[WorkerInfo]
    def __init__(self, sweeps: _Optional[_Iterable[_Union[SweepStatus, _Mapping]]] = ..., live_workers: _Optional[_Iterable[_Union[WorkerInfo, _Mapping]]] = ...) -> None: ...

class ResultsRequest(_message.Message):
    __slots__ = ("sweep",)
    SWEEP_FIELD_NUMBER: _ClassVar[int]
    sweep: str
    def __init__(self, sweep: _Optional[str] = ...) -> None: ...

class ResultRow(_message.Message):
    __slots__ = ("job_key", "kind", "stage", "family", "config", "device", "seed", "state", "attempts", "error", "metrics", "worker")
    JOB_KEY_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    WORKER_FIELD_NUMBER: _ClassVar[int]
    job_key: str
    kind: str
    stage: str
    family: str
    config: str
    device: str
    seed: int
    state: str
    attempts: int
    error: str
    metrics: _common_pb2.JobMetrics
    worker: str
    def __init__(self, job_key: _Optional[str] = ..., kind: _Optional[str] = ..., stage: _Optional[str] = ..., family: _Optional[str] = ..., config: _Optional[str] = ..., device: _Optional[str] = ..., seed: _Optional[int] = ..., state: _Optional[str] = ..., attempts: _Optional[int] = ..., error: _Optional[str] = ..., metrics: _Optional[_Union[_common_pb2.JobMetrics, _Mapping]] = ..., worker: _Optional[str] = ...) -> None: ...

class ResultsResponse(_message.Message):
    __slots__ = ("rows",)
    ROWS_FIELD_NUMBER: _ClassVar[int]
    rows: _containers.RepeatedCompositeFieldContainer[ResultRow]
    def __init__(self, rows: _Optional[_Iterable[_Union[ResultRow, _Mapping]]] = ...) -> None: ...

class CancelRequest(_message.Message):
    __slots__ = ("sweep",)
    SWEEP_FIELD_NUMBER: _ClassVar[int]
    sweep: str
    def __init__(self, sweep: _Optional[str] = ...) -> None: ...

class CancelResponse(_message.Message):
    __slots__ = ("cancelled",)
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    cancelled: int
    def __init__(self, cancelled: _Optional[int] = ...) -> None: ...

class RetryRequest(_message.Message):
    __slots__ = ("sweep", "dead")
    SWEEP_FIELD_NUMBER: _ClassVar[int]
    DEAD_FIELD_NUMBER: _ClassVar[int]
    sweep: str
    dead: bool
    def __init__(self, sweep: _Optional[str] = ..., dead: _Optional[bool] = ...) -> None: ...

class RetryResponse(_message.Message):
    __slots__ = ("requeued",)
    REQUEUED_FIELD_NUMBER: _ClassVar[int]
    requeued: int
    def __init__(self, requeued: _Optional[int] = ...) -> None: ...

class FamilyProgress(_message.Message):
    __slots__ = ("family", "counts", "total")
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    family: str
    counts: _containers.RepeatedCompositeFieldContainer[StateCount]
    total: int
    def __init__(self, family: _Optional[str] = ..., counts: _Optional[_Iterable[_Union[StateCount, _Mapping]]] = ..., total: _Optional[int] = ...) -> None: ...

class CorrelationsRequest(_message.Message):
    __slots__ = ("sweep", "proxy")
    SWEEP_FIELD_NUMBER: _ClassVar[int]
    PROXY_FIELD_NUMBER: _ClassVar[int]
    sweep: str
    proxy: str
    def __init__(self, sweep: _Optional[str] = ..., proxy: _Optional[str] = ...) -> None: ...

class CorrelationLine(_message.Message):
    __slots__ = ("family", "asd_metric", "n", "pearson_r", "pearson_p", "pearson_ci_low", "pearson_ci_high", "spearman_rho", "spearman_p", "spearman_p_method", "spearman_ci_low", "spearman_ci_high", "kendall_tau", "kendall_p", "q_bh", "difficulty", "direction", "significance", "note", "ci_level")
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    ASD_METRIC_FIELD_NUMBER: _ClassVar[int]
    N_FIELD_NUMBER: _ClassVar[int]
    PEARSON_R_FIELD_NUMBER: _ClassVar[int]
    PEARSON_P_FIELD_NUMBER: _ClassVar[int]
    PEARSON_CI_LOW_FIELD_NUMBER: _ClassVar[int]
    PEARSON_CI_HIGH_FIELD_NUMBER: _ClassVar[int]
    SPEARMAN_RHO_FIELD_NUMBER: _ClassVar[int]
    SPEARMAN_P_FIELD_NUMBER: _ClassVar[int]
    SPEARMAN_P_METHOD_FIELD_NUMBER: _ClassVar[int]
    SPEARMAN_CI_LOW_FIELD_NUMBER: _ClassVar[int]
    SPEARMAN_CI_HIGH_FIELD_NUMBER: _ClassVar[int]
    KENDALL_TAU_FIELD_NUMBER: _ClassVar[int]
    KENDALL_P_FIELD_NUMBER: _ClassVar[int]
    Q_BH_FIELD_NUMBER: _ClassVar[int]
    DIFFICULTY_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    SIGNIFICANCE_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    CI_LEVEL_FIELD_NUMBER: _ClassVar[int]
    family: str
    asd_metric: str
    n: int
    pearson_r: float
    pearson_p: float
    pearson_ci_low: float
    pearson_ci_high: float
    spearman_rho: float
    spearman_p: float
    spearman_p_method: str
    spearman_ci_low: float
    spearman_ci_high: float
    kendall_tau: float
    kendall_p: float
    q_bh: float
    difficulty: str
    direction: str
    significance: str
    note: str
    ci_level: float
    def __init__(self, family: _Optional[str] = ..., asd_metric: _Optional[str] = ..., n: _Optional[int] = ..., pearson_r: _Optional[float] = ..., pearson_p: _Optional[float] = ..., pearson_ci_low: _Optional[float] = ..., pearson_ci_high: _Optional[float] = ..., spearman_rho: _Optional[float] = ..., spearman_p: _Optional[float] = ..., spearman_p_method: _Optional[str] = ..., spearman_ci_low: _Optional[float] = ..., spearman_ci_high: _Optional[float] = ..., kendall_tau: _Optional[float] = ..., kendall_p: _Optional[float] = ..., q_bh: _Optional[float] = ..., difficulty: _Optional[str] = ..., direction: _Optional[str] = ..., significance: _Optional[str] = ..., note: _Optional[str] = ..., ci_level: _Optional[float] = ...) -> None: ...

class CorrelationsResponse(_message.Message):
    __slots__ = ("sweep_id", "name", "provisional", "open_jobs", "rows_used", "rows_without_proxy", "lines")
    SWEEP_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PROVISIONAL_FIELD_NUMBER: _ClassVar[int]
    OPEN_JOBS_FIELD_NUMBER: _ClassVar[int]
    ROWS_USED_FIELD_NUMBER: _ClassVar[int]
    ROWS_WITHOUT_PROXY_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    sweep_id: int
    name: str
    provisional: bool
    open_jobs: int
    rows_used: int
    rows_without_proxy: int
    lines: _containers.RepeatedCompositeFieldContainer[CorrelationLine]
    def __init__(self, sweep_id: _Optional[int] = ..., name: _Optional[str] = ..., provisional: _Optional[bool] = ..., open_jobs: _Optional[int] = ..., rows_used: _Optional[int] = ..., rows_without_proxy: _Optional[int] = ..., lines: _Optional[_Iterable[_Union[CorrelationLine, _Mapping]]] = ...) -> None: ...
