"""ONNX Runtime on the CPU as a Triton *Python-based backend* (`backend: "onnxruntime"`).

The tritonserver binary in nvidia-pytriton has no native ONNX Runtime backend; placed as
`<backends>/onnxruntime/model.py`, this file serves standard ONNX model folders unchanged.
In production the NGC container's native backend serves the same repository.
"""

import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.config = json.loads(args["model_config"])
        model_dir = args["model_repository"]
        version = args["model_version"]
        path = os.path.join(model_dir, version, "model.onnx")
        if not os.path.exists(path):  # older servers pass the repository root
            path = os.path.join(model_dir, self.config["name"], version, "model.onnx")
        params = {k: v["string_value"] for k, v in self.config.get("parameters", {}).items()}
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(params.get("intra_op_thread_count", "2"))
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        graph_in = {i.name for i in self.session.get_inputs()}
        graph_out = {o.name for o in self.session.get_outputs()}
        self.inputs = [i["name"] for i in self.config["input"]]
        self.outputs = [o["name"] for o in self.config["output"]]
        missing = (set(self.inputs) - graph_in) | (set(self.outputs) - graph_out)
        if missing:
            raise pb_utils.TritonModelException(
                f"config names {sorted(missing)} are not in {path} "
                f"(graph inputs {sorted(graph_in)}, outputs {sorted(graph_out)})")
        self.dtypes = {o["name"]: pb_utils.triton_string_to_numpy(o["data_type"])
                       for o in self.config["output"]}

    def execute(self, requests):
        """Run compatible requests (same non-batch shapes, same requested outputs) as one batch
        and split the result. Only requested outputs are fetched: the encoder's token states
        are large and only the explaining path asks for them."""
        arrays, wanted = [], []
        for request in requests:
            arrays.append({n: pb_utils.get_input_tensor_by_name(request, n).as_numpy()
                           for n in self.inputs})
            asked = set(request.requested_output_names())
            wanted.append(tuple(n for n in self.outputs if n in asked) or tuple(self.outputs))
        groups = {}
        for idx, arr in enumerate(arrays):
            key = (tuple(arr[n].shape[1:] for n in self.inputs), wanted[idx])
            groups.setdefault(key, []).append(idx)
        responses = [None] * len(requests)
        for (_, outputs), idxs in groups.items():
            feed = {n: np.concatenate([arrays[i][n] for i in idxs]) for n in self.inputs}
            try:
                results = self.session.run(list(outputs), feed)
            except Exception as exc:  # the input's fault: answer these requests with an error
                for i in idxs:
                    responses[i] = pb_utils.InferenceResponse(
                        output_tensors=[], error=pb_utils.TritonError(str(exc)))
                continue
            start = 0
            for i in idxs:
                n = arrays[i][self.inputs[0]].shape[0]
                responses[i] = pb_utils.InferenceResponse(output_tensors=[
                    pb_utils.Tensor(name, res[start:start + n].astype(self.dtypes[name]))
                    for name, res in zip(outputs, results, strict=True)])
                start += n
        return responses
