"""Reads OTLP/HTTP trace exports (protobuf) without generated code: a small decoder of the
protobuf wire format, and the ExportTraceServiceRequest fields the tests look at (field numbers
from opentelemetry-proto's trace.proto and common.proto)."""
import struct


def fields(data):
    """[(field number, wire type, value)]: varints as int, fixed64 as bytes, length-delimited
    as bytes."""
    out, i = [], 0
    while i < len(data):
        key, i = _varint(data, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(data, i)
        elif wire == 1:
            value, i = data[i:i + 8], i + 8
        elif wire == 2:
            n, i = _varint(data, i)
            value, i = data[i:i + n], i + n
            if i > len(data):
                raise ValueError("truncated field")
        elif wire == 5:
            value, i = data[i:i + 4], i + 4
        else:
            raise ValueError(f"wire type {wire}")
        out.append((number, wire, value))
    return out


def _varint(data, i):
    shift = value = 0
    while True:
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i
        shift += 7


def _all(data, number):
    return [v for n, _, v in fields(data) if n == number]


def _one(data, number, default=None):
    found = _all(data, number)
    return found[-1] if found else default


def any_value(data):
    for n, _, v in fields(data):
        if n == 1:
            return v.decode("utf-8")  # strict: protobuf strings must be UTF-8
        if n == 2:
            return bool(v)
        if n == 3:
            return v - (1 << 64) if v >= 1 << 63 else v
        if n == 4:
            return struct.unpack("<d", v)[0]
    return None


def attributes(data, number):
    """KeyValue fields `number` of `data` as a dict (a repeated key keeps its last value)."""
    return {_one(kv, 1).decode(): any_value(_one(kv, 2, b"")) for kv in _all(data, number)}


def export(body):
    """An ExportTraceServiceRequest: [(resource attributes, scope name, [span dicts])]."""
    out = []
    for rs in _all(body, 1):
        resource = attributes(_one(rs, 1, b""), 1)
        for ss in _all(rs, 2):
            scope = _one(_one(ss, 1, b""), 1, b"").decode()
            out.append((resource, scope, [span(s) for s in _all(ss, 2)]))
    return out


def span(data):
    status = _one(data, 15)
    return {
        "trace_id": _one(data, 1, b"").hex(), "span_id": _one(data, 2, b"").hex(),
        "trace_state": _one(data, 3, b"").decode(), "parent_span_id": _one(data, 4, b"").hex(),
        "name": _one(data, 5, b"").decode(), "kind": _one(data, 6, 0),
        "start": struct.unpack("<Q", _one(data, 7))[0], "end": struct.unpack("<Q", _one(data, 8))[0],
        "attributes": attributes(data, 9),
        "status": None if status is None else {"message": _one(status, 2, b"").decode(),
                                               "code": _one(status, 3, 0)},
    }
