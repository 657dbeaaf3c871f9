"""Triton config.pbtxt for the ONNX models this project exports (one writer for all)."""

from __future__ import annotations

import json

Spec = dict[str, tuple[str, list[int]]]  # tensor name -> (Triton data type, dims)


def model_config(name: str, header: list[str], max_batch_size: int, inputs: Spec,
                 outputs: Spec, parameters: dict[str, str]) -> str:
    """`header`: comment lines (without "# "); `parameters`: string values."""

    def block(kind: str, spec: Spec) -> str:
        rows = [f'  {{ name: "{n}" data_type: {t} dims: [ {", ".join(map(str, d))} ] }}'
                for n, (t, d) in spec.items()]
        return f"{kind} [\n" + ",\n".join(rows) + "\n]"

    def param(key: str, value: str) -> str:
        quoted = json.dumps(value)
        return f'parameters {{\n  key: "{key}"\n  value: {{ string_value: {quoted} }}\n}}'

    return "\n".join([
        *(f"# {line}" for line in header),
        f'name: "{name}"', 'backend: "onnxruntime"', f"max_batch_size: {max_batch_size}",
        block("input", inputs), block("output", outputs),
        "dynamic_batching {\n  max_queue_delay_microseconds: 500\n}",
        *(param(k, v) for k, v in parameters.items()), ""])
