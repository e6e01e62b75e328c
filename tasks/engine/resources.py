"""What one unit of work used on its worker: CPU seconds, peak memory and, on CUDA, GPU use.

CPU is the worker process's CPU time over the unit (all its threads, XGBoost's OpenMP ones
included): exact when the worker runs one unit at a time, which is how tuneflow sizes its local
workers (one thread each, `cores // workers` cores per trial). Memory is the process's peak
resident set during the unit (it includes the resident data: it is what the worker must have).
GPU utilisation and memory come from NVML (`nvidia-ml-py`) when the unit runs on CUDA and NVML
loads; otherwise they are None.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import psutil

SAMPLE_S = 0.05


class ResourceMeter:
    """Samples this process while a unit runs: `start()`, the work, then `stop()` for the figures."""

    def __init__(self, device: str = "cpu", interval_s: float = SAMPLE_S) -> None:
        self.device, self.interval_s = device, interval_s
        self.process = psutil.Process()
        self.peak_rss = 0
        self.gpu_util: list[float] = []
        self.gpu_mem_peak = 0
        self.done = threading.Event()
        self.nvml: Any = _nvml_handle() if device == "cuda" else None

    def start(self) -> ResourceMeter:
        self.cpu0 = time.process_time()
        self._sample()
        self.thread = threading.Thread(target=self._run, name="tuneflow-resource-meter", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> dict[str, Any]:
        """The unit's figures, as TrialResult fields."""
        cpu = time.process_time() - self.cpu0
        self.done.set()
        self.thread.join(timeout=1.0)
        self._sample()
        return {
            "cpu_seconds": round(cpu, 4),
            "peak_rss_mb": round(self.peak_rss / 2**20, 2),
            "gpu_util_pct": round(sum(self.gpu_util) / len(self.gpu_util), 1) if self.gpu_util else None,
            "gpu_mem_peak_mb": round(self.gpu_mem_peak / 2**20, 2) if self.nvml is not None else None,
        }

    def _run(self) -> None:
        while not self.done.wait(self.interval_s):
            self._sample()

    def _sample(self) -> None:
        try:
            self.peak_rss = max(self.peak_rss, self.process.memory_info().rss)
        except psutil.Error:
            return
        if self.nvml is not None:
            import pynvml

            try:
                self.gpu_util.append(float(pynvml.nvmlDeviceGetUtilizationRates(self.nvml).gpu))
                self.gpu_mem_peak = max(self.gpu_mem_peak, int(pynvml.nvmlDeviceGetMemoryInfo(self.nvml).used))
            except pynvml.NVMLError:
                self.nvml = None


def _nvml_handle() -> Any:
    """NVML's handle of the GPU this process uses (the first visible one), or None."""
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml.nvmlDeviceGetHandleByIndex(0)
    except Exception:  # no nvidia-ml-py, no driver, no GPU: GPU figures stay None
        return None


def combine(results: list[dict[str, Any]]) -> dict[str, Any]:
    """One unit over several workers (data-parallel): CPU adds up, peaks are the largest."""
    def most(key: str) -> Any:
        values = [r[key] for r in results if r.get(key) is not None]
        return max(values) if values else None

    return {"cpu_seconds": round(sum(r.get("cpu_seconds") or 0.0 for r in results), 4), "peak_rss_mb": most("peak_rss_mb"),
            "gpu_util_pct": most("gpu_util_pct"), "gpu_mem_peak_mb": most("gpu_mem_peak_mb")}
