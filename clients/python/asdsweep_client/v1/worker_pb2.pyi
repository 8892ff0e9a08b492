from . import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Capabilities(_message.Message):
    __slots__ = ("backend", "device", "memory_bytes", "labels", "kinds")
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    KINDS_FIELD_NUMBER: _ClassVar[int]
    backend: str
    device: str
    memory_bytes: int
    labels: _containers.RepeatedScalarFieldContainer[str]
    kinds: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, backend: _Optional[str] = ..., device: _Optional[str] = ..., memory_bytes: _Optional[int] = ..., labels: _Optional[_Iterable[str]] = ..., kinds: _Optional[_Iterable[str]] = ...) -> None: ...

class RegisterRequest(_message.Message):
    __slots__ = ("name", "capabilities", "version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    capabilities: Capabilities
    version: str
    def __init__(self, name: _Optional[str] = ..., capabilities: _Optional[_Union[Capabilities, _Mapping]] = ..., version: _Optional[str] = ...) -> None: ...

class RegisterResponse(_message.Message):
    __slots__ = ("worker_id", "heartbeat_interval_ms")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    heartbeat_interval_ms: int
    def __init__(self, worker_id: _Optional[str] = ..., heartbeat_interval_ms: _Optional[int] = ...) -> None: ...

class LeaseRequest(_message.Message):
    __slots__ = ("worker_id",)
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    def __init__(self, worker_id: _Optional[str] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("job_id", "job_key", "sweep_id", "kind", "stage", "family", "config", "device", "seed", "params_json", "attempt", "max_attempts", "input_artifacts", "spec_hash", "resume_checkpoint")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_KEY_FIELD_NUMBER: _ClassVar[int]
    SWEEP_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    PARAMS_JSON_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    INPUT_ARTIFACTS_FIELD_NUMBER: _ClassVar[int]
    SPEC_HASH_FIELD_NUMBER: _ClassVar[int]
    RESUME_CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    job_id: int
    job_key: str
    sweep_id: int
    kind: str
    stage: str
    family: str
    config: str
    device: str
    seed: int
    params_json: str
    attempt: int
    max_attempts: int
    input_artifacts: _containers.RepeatedScalarFieldContainer[str]
    spec_hash: str
    resume_checkpoint: str
    def __init__(self, job_id: _Optional[int] = ..., job_key: _Optional[str] = ..., sweep_id: _Optional[int] = ..., kind: _Optional[str] = ..., stage: _Optional[str] = ..., family: _Optional[str] = ..., config: _Optional[str] = ..., device: _Optional[str] = ..., seed: _Optional[int] = ..., params_json: _Optional[str] = ..., attempt: _Optional[int] = ..., max_attempts: _Optional[int] = ..., input_artifacts: _Optional[_Iterable[str]] = ..., spec_hash: _Optional[str] = ..., resume_checkpoint: _Optional[str] = ...) -> None: ...

class Lease(_message.Message):
    __slots__ = ("job", "token", "expires_at_ms", "ttl_ms")
    JOB_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_MS_FIELD_NUMBER: _ClassVar[int]
    TTL_MS_FIELD_NUMBER: _ClassVar[int]
    job: Job
    token: int
    expires_at_ms: int
    ttl_ms: int
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ..., token: _Optional[int] = ..., expires_at_ms: _Optional[int] = ..., ttl_ms: _Optional[int] = ...) -> None: ...

class LeaseResponse(_message.Message):
    __slots__ = ("lease", "retry_after_ms")
    LEASE_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_MS_FIELD_NUMBER: _ClassVar[int]
    lease: Lease
    retry_after_ms: int
    def __init__(self, lease: _Optional[_Union[Lease, _Mapping]] = ..., retry_after_ms: _Optional[int] = ...) -> None: ...

class Progress(_message.Message):
    __slots__ = ("epoch", "epochs", "loss", "message", "checkpoint", "steps_per_s")
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    STEPS_PER_S_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    epochs: int
    loss: float
    message: str
    checkpoint: str
    steps_per_s: float
    def __init__(self, epoch: _Optional[int] = ..., epochs: _Optional[int] = ..., loss: _Optional[float] = ..., message: _Optional[str] = ..., checkpoint: _Optional[str] = ..., steps_per_s: _Optional[float] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("worker_id", "job_id", "token", "progress")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    job_id: int
    token: int
    progress: Progress
    def __init__(self, worker_id: _Optional[str] = ..., job_id: _Optional[int] = ..., token: _Optional[int] = ..., progress: _Optional[_Union[Progress, _Mapping]] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ("expires_at_ms", "cancelled")
    EXPIRES_AT_MS_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    expires_at_ms: int
    cancelled: bool
    def __init__(self, expires_at_ms: _Optional[int] = ..., cancelled: _Optional[bool] = ...) -> None: ...

class CompleteRequest(_message.Message):
    __slots__ = ("worker_id", "job_id", "token", "metrics")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    job_id: int
    token: int
    metrics: _common_pb2.JobMetrics
    def __init__(self, worker_id: _Optional[str] = ..., job_id: _Optional[int] = ..., token: _Optional[int] = ..., metrics: _Optional[_Union[_common_pb2.JobMetrics, _Mapping]] = ...) -> None: ...

class CompleteResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class FailRequest(_message.Message):
    __slots__ = ("worker_id", "job_id", "token", "error", "retryable", "release")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    RETRYABLE_FIELD_NUMBER: _ClassVar[int]
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    job_id: int
    token: int
    error: str
    retryable: bool
    release: bool
    def __init__(self, worker_id: _Optional[str] = ..., job_id: _Optional[int] = ..., token: _Optional[int] = ..., error: _Optional[str] = ..., retryable: _Optional[bool] = ..., release: _Optional[bool] = ...) -> None: ...

class FailResponse(_message.Message):
    __slots__ = ("state",)
    STATE_FIELD_NUMBER: _ClassVar[int]
    state: str
    def __init__(self, state: _Optional[str] = ...) -> None: ...
