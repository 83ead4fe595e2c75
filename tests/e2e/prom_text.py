"""A small, strict parser for the Prometheus text exposition format 0.0.4, for tests."""
import math
import re

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r"[a-zA-Z_][a-zA-Z0-9_]*"
HELP_RE = re.compile(rf"^# HELP ({NAME}) (.*)$")
TYPE_RE = re.compile(rf"^# TYPE ({NAME}) (counter|gauge|histogram|summary|untyped)$")
SAMPLE_RE = re.compile(rf"^({NAME})(\{{.*\}})? (\S+)( -?\d+)?$")
LABEL_RE = re.compile(rf'({LABEL})="((?:[^"\\\n]|\\[\\"n])*)"')
SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("", "_sum", "_count")}


def _labels(text, line):
    """'{a="1",b="x\\"y"}' -> {"a": "1", "b": 'x"y'}; raises on anything malformed."""
    inner = text[1:-1]
    out, pos = {}, 0
    while pos < len(inner):
        m = LABEL_RE.match(inner, pos)
        if not m:
            raise ValueError(f"bad labels in {line!r}")
        name = m.group(1)
        if name in out:
            raise ValueError(f"duplicate label {name} in {line!r}")
        out[name] = m.group(2).replace("\\n", "\n").replace('\\"', '"').replace("\\\\", "\\")
        pos = m.end()
        if pos < len(inner):
            if inner[pos] != ",":
                raise ValueError(f"bad labels in {line!r}")
            pos += 1
    return out


def _value(text, line):
    if text in ("+Inf", "-Inf", "NaN"):
        return float(text.replace("Inf", "inf").replace("NaN", "nan"))
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"bad value in {line!r}") from None


class Metrics:
    def __init__(self, types, helps, samples):
        self.types = types      # family -> type
        self.helps = helps      # family -> help text
        self.samples = samples  # [(name, {labels}, value)]

    def find(self, name, **labels):
        """Every sample of name whose labels include the given ones."""
        return [(lb, v) for n, lb, v in self.samples
                if n == name and all(lb.get(k) == str(want) for k, want in labels.items())]

    def value(self, name, **labels):
        """The sum over the matching samples (so extra labels, e.g. per worker, still add up);
        None when there is none."""
        found = self.find(name, **labels)
        return sum(v for _, v in found) if found else None


def parse(text):
    """Parses and checks the format: HELP/TYPE lines well-formed, one TYPE per family and before
    its samples, every sample `name{labels} value` of a declared family."""
    types, helps, samples = {}, {}, []
    seen_families = set()
    for line in text.split("\n"):
        if line == "":
            continue
        if line.startswith("#"):
            if line.startswith("# HELP "):
                m = HELP_RE.match(line)
                if not m:
                    raise ValueError(f"bad HELP line {line!r}")
                if m.group(1) in helps:
                    raise ValueError(f"second HELP for {m.group(1)}")
                helps[m.group(1)] = m.group(2)
            elif line.startswith("# TYPE "):
                m = TYPE_RE.match(line)
                if not m:
                    raise ValueError(f"bad TYPE line {line!r}")
                fam = m.group(1)
                if fam in types:
                    raise ValueError(f"second TYPE for {fam}")
                if fam in seen_families:
                    raise ValueError(f"TYPE for {fam} after its samples")
                types[fam] = m.group(2)
            continue  # other comments are allowed
        m = SAMPLE_RE.match(line)
        if not m:
            raise ValueError(f"bad sample line {line!r}")
        name = m.group(1)
        labels = _labels(m.group(2), line) if m.group(2) else {}
        value = _value(m.group(3), line)
        family = family_of(name, types)
        if family is None:
            raise ValueError(f"sample {name} has no TYPE")
        seen_families.add(family)
        samples.append((name, labels, value))
    return Metrics(types, helps, samples)


def family_of(name, types):
    if name in types and types[name] not in SUFFIXES:
        return name
    for fam, t in types.items():
        for suffix in SUFFIXES.get(t, ()):
            if suffix and name == fam + suffix:
                return fam
    if name in types:
        return name
    return None


def check_histogram(metrics, family, **labels):
    """Buckets are cumulative (non-decreasing in le), end with +Inf equal to _count; returns
    (count, sum) for the series selected by labels."""
    by_le = {}
    for lb, v in metrics.find(family + "_bucket", **labels):
        le = math.inf if lb["le"] == "+Inf" else float(lb["le"])
        by_le[le] = by_le.get(le, 0) + v
    buckets = sorted(by_le.items())
    assert buckets, f"no {family}_bucket{labels}"
    assert buckets[-1][0] == math.inf, buckets
    values = [v for _, v in buckets]
    assert values == sorted(values), buckets
    count = metrics.value(family + "_count", **labels)
    total = metrics.value(family + "_sum", **labels)
    assert count == buckets[-1][1], (count, buckets)
    assert total is not None and total >= 0
    return count, total
