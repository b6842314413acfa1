"""The gpu check's first step: versions, the GPU, which modules import, and the torch APIs the GPU
path relies on (by name: a private one gone in this torch shows here first). Writes argv[1]."""

import importlib
import inspect
import json
import platform
import sys
import warnings

MODULES = ("torch", "numpy", "deap", "moocore", "cffi", "pytest", "pytest_timeout", "safetensors", "onnx",
           "onnxruntime", "plotly", "click", "yaml", "pandas", "rich")


def main(path: str) -> None:
    facts = {"python": sys.version.split()[0], "platform": platform.platform(), "executable": sys.executable}
    warnings.simplefilter("ignore")  # click 8.2 deprecates its __version__; we only read it
    facts["paths"] = {}  # which copy imported: the machine's own, or a carried wheel's
    for name in MODULES:
        try:
            module = importlib.import_module(name)
        except Exception as err:  # noqa: BLE001 - what is missing is the point
            facts[name] = f"MISSING ({type(err).__name__})"
            continue
        facts[name] = getattr(module, "__version__", "yes")
        facts["paths"][name] = getattr(module, "__file__", None)
    import torch

    facts["cuda_available"] = torch.cuda.is_available()
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        facts.update(device=torch.cuda.get_device_name(), capability=torch.cuda.get_device_capability(),
                     cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(), bf16=torch.cuda.is_bf16_supported(),
                     memory_gib=round(props.total_memory / 2**30, 1), cudnn_benchmark=torch.backends.cudnn.benchmark)
    facts["api"] = api_facts(torch)
    with open(path, "w") as out:
        json.dump(facts, out, indent=2, default=str)
    print(json.dumps(facts, indent=2, default=str))


def api_facts(torch) -> dict:
    capture = inspect.signature(torch.cuda.CUDAGraph.capture_begin).parameters
    facts = {
        "CUDAGraph.capture_begin(pool, capture_error_mode)": {"pool", "capture_error_mode"} <= set(capture),
        "Generator.clone_state": hasattr(torch.Generator, "clone_state"),
        "Generator.graphsafe_set_state": hasattr(torch.Generator, "graphsafe_set_state"),
        "_cuda_endAllocateToPool": hasattr(torch._C, "_cuda_endAllocateToPool"),
        "_cuda_endAllocateCurrentStreamToPool": hasattr(torch._C, "_cuda_endAllocateCurrentStreamToPool"),
        "_cuda_releasePool": hasattr(torch._C, "_cuda_releasePool"),
        "torch.AcceleratorError": hasattr(torch, "AcceleratorError"),
        "sync_debug_mode": hasattr(torch.cuda, "set_sync_debug_mode"),
    }
    try:  # what torch.cuda.graph does on entry, which GraphedStep.capture no longer pays
        source = inspect.getsource(torch.cuda.graph.__enter__)
        facts["torch.cuda.graph.__enter__"] = {"synchronize": "synchronize()" in source,
                                               "gc_collect": "gc.collect()" in source,
                                               "empty_cache": "empty_cache()" in source}
    except (OSError, TypeError) as err:
        facts["torch.cuda.graph.__enter__"] = f"unreadable ({err})"
    return facts


if __name__ == "__main__":
    main(sys.argv[1])
