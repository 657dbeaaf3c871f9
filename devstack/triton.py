"""The real tritonserver (shipped in nvidia-pytriton) on 127.0.0.1, CPU only."""

from __future__ import annotations

import shutil
import sys
import sysconfig
import urllib.request
from pathlib import Path

from devstack.procs import ROOT, STATE_DIR, Server, free_port

HERE = Path(__file__).resolve().parent


def _pytriton_dir() -> Path:
    import pytriton

    return Path(pytriton.__file__).resolve().parent


def backends_dir() -> Path:
    """A backend directory: pytriton's python backend + its stub for this Python, and our
    ONNX Runtime stand-in as the `onnxruntime` backend."""
    src = _pytriton_dir() / "tritonserver"
    out = STATE_DIR / "triton-backends"
    py = out / "python"
    py.mkdir(parents=True, exist_ok=True)
    for f in (src / "backends" / "python").iterdir():  # copies: Triton refuses symlinks
        target = py / f.name
        if f.is_file() and not target.exists():
            shutil.copy2(f, target)
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = py / "triton_python_backend_stub"
    if not stub.exists():
        shutil.copy2(src / "python_backend_stubs" / version / "triton_python_backend_stub", stub)
    ort = out / "onnxruntime"
    ort.mkdir(exist_ok=True)
    shutil.copy2(HERE / "triton_backend" / "model.py", ort / "model.py")
    return out


class Triton:
    def __init__(self, model_repository: Path = ROOT / "model_repository",
                 grpc_port: int | None = None, http_port: int | None = None) -> None:
        self.grpc_port = grpc_port or free_port()
        self.http_port = http_port or free_port()
        self.metrics_port = free_port()
        binary = _pytriton_dir() / "tritonserver" / "bin" / "tritonserver"
        libs = _pytriton_dir().parent / "nvidia_pytriton.libs"
        venv_bin = Path(sys.executable).parent
        self.server = Server(
            "tritonserver",
            [str(binary), f"--model-repository={model_repository}",
             f"--backend-directory={backends_dir()}",
             "--http-address=127.0.0.1", "--grpc-address=127.0.0.1", "--metrics-address=127.0.0.1",
             f"--http-port={self.http_port}", f"--grpc-port={self.grpc_port}",
             f"--metrics-port={self.metrics_port}", "--allow-gpu-metrics=false",
             "--pinned-memory-pool-byte-size=0", "--cuda-memory-pool-byte-size=0:0",
             "--exit-on-error=true", "--log-verbose=0"],
            # the python stub finds its interpreter (and onnxruntime) through python3 on PATH
            env={"LD_LIBRARY_PATH": f"{libs}:{sysconfig.get_config_var('LIBDIR')}",
                 "PATH": f"{venv_bin}:/usr/bin:/bin"},
        )

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def ready(self) -> bool:
        try:
            url = f"http://127.0.0.1:{self.http_port}/v2/health/ready"
            with urllib.request.urlopen(url, timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def start(self, timeout: float = 120.0) -> Triton:
        self.server.start()
        self.server.wait_until(self.ready, timeout)
        return self

    def stop(self) -> None:
        self.server.stop()
