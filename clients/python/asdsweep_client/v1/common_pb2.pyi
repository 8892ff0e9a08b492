from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MetricDirection(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    METRIC_DIRECTION_UNSPECIFIED: _ClassVar[MetricDirection]
    HIGHER_IS_BETTER: _ClassVar[MetricDirection]
    LOWER_IS_BETTER: _ClassVar[MetricDirection]
METRIC_DIRECTION_UNSPECIFIED: MetricDirection
HIGHER_IS_BETTER: MetricDirection
LOWER_IS_BETTER: MetricDirection

class JobMetrics(_message.Message):
    __slots__ = ("proxy_metric", "proxy_value", "lp_in_auc", "lp_in_pauc", "lp_out_auc", "lp_out_pauc", "md_auc", "md_pauc", "extra_json", "provenance_json", "artifacts", "proxy_direction", "metrics")
    PROXY_METRIC_FIELD_NUMBER: _ClassVar[int]
    PROXY_VALUE_FIELD_NUMBER: _ClassVar[int]
    LP_IN_AUC_FIELD_NUMBER: _ClassVar[int]
    LP_IN_PAUC_FIELD_NUMBER: _ClassVar[int]
    LP_OUT_AUC_FIELD_NUMBER: _ClassVar[int]
    LP_OUT_PAUC_FIELD_NUMBER: _ClassVar[int]
    MD_AUC_FIELD_NUMBER: _ClassVar[int]
    MD_PAUC_FIELD_NUMBER: _ClassVar[int]
    EXTRA_JSON_FIELD_NUMBER: _ClassVar[int]
    PROVENANCE_JSON_FIELD_NUMBER: _ClassVar[int]
    ARTIFACTS_FIELD_NUMBER: _ClassVar[int]
    PROXY_DIRECTION_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    proxy_metric: str
    proxy_value: float
    lp_in_auc: float
    lp_in_pauc: float
    lp_out_auc: float
    lp_out_pauc: float
    md_auc: float
    md_pauc: float
    extra_json: str
    provenance_json: str
    artifacts: _containers.RepeatedScalarFieldContainer[str]
    proxy_direction: MetricDirection
    metrics: _containers.RepeatedCompositeFieldContainer[NamedMetric]
    def __init__(self, proxy_metric: _Optional[str] = ..., proxy_value: _Optional[float] = ..., lp_in_auc: _Optional[float] = ..., lp_in_pauc: _Optional[float] = ..., lp_out_auc: _Optional[float] = ..., lp_out_pauc: _Optional[float] = ..., md_auc: _Optional[float] = ..., md_pauc: _Optional[float] = ..., extra_json: _Optional[str] = ..., provenance_json: _Optional[str] = ..., artifacts: _Optional[_Iterable[str]] = ..., proxy_direction: _Optional[_Union[MetricDirection, str]] = ..., metrics: _Optional[_Iterable[_Union[NamedMetric, _Mapping]]] = ...) -> None: ...

class NamedMetric(_message.Message):
    __slots__ = ("name", "value", "direction")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: float
    direction: MetricDirection
    def __init__(self, name: _Optional[str] = ..., value: _Optional[float] = ..., direction: _Optional[_Union[MetricDirection, str]] = ...) -> None: ...
