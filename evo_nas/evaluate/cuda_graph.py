"""One training step captured as a CUDA graph, with its own stream, memory pool and RNG state.   [torch]

Why each GraphedStep owns its pool, capture stream, RNG state and references, and how a failed
capture is cleaned up, is in docs/training.md ("CUDA graphs").
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Callable, Sequence

import torch


def one_line(err: BaseException, limit: int = 200) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


class CaptureError(RuntimeError):
    """The step could not be captured as a CUDA graph; train eagerly instead."""


_UNENDED_CAPTURES: list = []  # failed CUDAGraphs torch may still point at; see discard_capture

# After a graph is closed, the allocator's cache is emptied once this process holds more than
# this share of the GPU's memory. A closed graph's pool is only marked freeable: no other
# allocation reuses it, and a capture cannot free it (no cudaFree while capturing), so dead
# pools piled up until a capture ran out of memory (DARTS-V2 at batch 512 keeps ~2.6 GB of
# activations per graph: ~40 captures fill an H200). Not emptied after every graph: emptying
# synchronizes the device, which drains the streams of the other candidates in flight.
RELEASE_SHARE = 0.25


@contextlib.contextmanager
def _syncs_are_errors():
    """Make torch raise on any host-device sync (process-wide, for the duration)."""
    old = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode(old)


def _private_rng(device: torch.device, seed: int | None):
    """A CUDA generator state of our own (seeded), or None where torch lacks graph-safe states."""
    default = torch.cuda.default_generators[device.index]
    try:
        state = default.clone_state()
        if seed is not None:
            state.manual_seed(seed)
        return state
    except (AttributeError, RuntimeError):
        return None


def release_cache(device: torch.device, share: float | None = None, *,
                  reserved: Callable[[torch.device], int] = torch.cuda.memory_reserved,
                  total: Callable[[torch.device], int] | None = None,
                  empty: Callable[[], None] = torch.cuda.empty_cache) -> bool:
    """Empty the CUDA allocator's cache if this process holds (`reserved`) more than `share`
    (default RELEASE_SHARE) of the device's memory (`total`); True if it did. The hooks are
    torch's unless given."""
    share = RELEASE_SHARE if share is None else share
    total = total or (lambda d: torch.cuda.get_device_properties(d).total_memory)
    if reserved(device) <= share * total(device):
        return False
    empty()
    return True


def discard_capture(graph, device: torch.device, pool) -> None:
    """Free what a failed capture left behind. If capture_end never finished, torch's allocator
    still routes allocations to `pool`: end that and release the pool (private hooks, best
    effort), and keep the graph object alive, since torch may hold raw pointers to it."""
    try:
        graph.pool()  # raises unless capture_end finished; then reset() releases the pool
    except RuntimeError:
        end = (getattr(torch._C, "_cuda_endAllocateToPool", None)  # its name in newer torch
               or getattr(torch._C, "_cuda_endAllocateCurrentStreamToPool", None))  # in 2.4
        try:
            if end is not None:
                end(device.index, pool)
                torch._C._cuda_releasePool(device.index, pool)
        except RuntimeError:
            pass  # capture_end had ended the routing before it failed
        _UNENDED_CAPTURES.append(graph)
    try:
        graph.reset()
    except RuntimeError:
        pass


class GraphedStep:
    """One training step as one CUDA graph, with its own stream, memory pool and RNG state.

    `step()` reads `inputs` (static buffers) and does the whole step; `keep` holds whatever
    it writes (model, optimizer, accumulators) alive as long as the graph. Use: run_eager()
    a few times (the warm-up), capture(), then replay() per step; close() at the end.
    Replay a GraphedStep on one stream at a time; different GraphedSteps may replay on
    different streams concurrently.
    """

    def __init__(self, step: Callable[[], None], inputs: Sequence[torch.Tensor], *, keep: Sequence = (),
                 seed: int | None = None, stream: torch.cuda.Stream | None = None,
                 capture_error_mode: str = "global"):
        self.device = inputs[0].device
        self.step, self.inputs, self.keep = step, tuple(inputs), tuple(keep)
        self.stream = stream if stream is not None else torch.cuda.Stream(self.device)
        self.pool = torch.cuda.graph_pool_handle()
        self.rng = _private_rng(self.device, seed)
        self.capture_error_mode = capture_error_mode
        self.graph: torch.cuda.CUDAGraph | None = None
        self._replay_streams: set = set()

    @contextlib.contextmanager
    def _own_rng(self):
        """The default CUDA generator uses this step's state while the step warms up or is
        captured; capture registers that state with the graph for all its replays."""
        if self.rng is None:
            yield
            return
        default = torch.cuda.default_generators[self.device.index]
        saved = default.graphsafe_get_state()
        default.graphsafe_set_state(self.rng)
        try:
            yield
        finally:
            default.graphsafe_set_state(saved)

    def _load(self, batch: Sequence[torch.Tensor], stream: torch.cuda.Stream) -> None:
        """Copy batch into the static inputs on `stream`, which must already wait for the
        stream the batch was made on; record_stream keeps its memory until the copy is done."""
        for static, value in zip(self.inputs, batch):
            static.copy_(value, non_blocking=True)
            value.record_stream(stream)

    def run_eager(self, batch: Sequence[torch.Tensor]) -> None:
        """One eager step on this step's stream (the warm-up). Raises CaptureError if the step
        syncs with the host, which would make capture fail."""
        if self.graph is not None:
            raise RuntimeError("run_eager after capture: the graph owns the step now")
        caller = torch.cuda.current_stream(self.device)
        self.stream.wait_stream(caller)
        with torch.cuda.stream(self.stream), self._own_rng(), warnings.catch_warnings():
            # capturable optimizers warn when they step outside a capture; that is the point here
            warnings.filterwarnings("ignore", message=".*capturable=True.*")
            self._load(batch, self.stream)
            try:
                with _syncs_are_errors():
                    self.step()
            except RuntimeError as err:
                if "synchroniz" in str(err):
                    raise CaptureError(f"the step syncs with the host ({one_line(err)})") from err
                raise
        caller.wait_stream(self.stream)

    def capture(self) -> None:
        """Capture step() into this step's graph; on any failure discard it, raise CaptureError.

        capture_begin/capture_end on this step's own stream, which first waits for the caller's:
        torch.cuda.graph(...) would also synchronize the whole device (and, depending on the
        version, gc.collect() and empty the allocator's cache), draining every other
        candidate's stream at each capture (docs/training.md)."""
        graph = torch.cuda.CUDAGraph()
        caller = torch.cuda.current_stream(self.device)
        self.stream.wait_stream(caller)
        try:
            with self._own_rng(), torch.cuda.stream(self.stream):
                graph.capture_begin(pool=self.pool, capture_error_mode=self.capture_error_mode)
                try:
                    self.step()
                except BaseException:
                    with contextlib.suppress(RuntimeError):  # end the capture; keep the step's own error
                        graph.capture_end()
                    raise
                graph.capture_end()
        except Exception as err:  # any failure: no graph, train eagerly
            torch.cuda.set_stream(caller)  # belt and braces: the stream context restored it
            discard_capture(graph, self.device, self.pool)
            if isinstance(err, torch.cuda.OutOfMemoryError):
                torch.cuda.empty_cache()
                raise CaptureError(f"capture ran out of memory ({one_line(err)})") from err
            raise CaptureError(f"capture failed ({one_line(err)})") from err
        caller.wait_stream(self.stream)
        self.graph = graph

    def replay(self, batch: Sequence[torch.Tensor] | None = None,
               stream: torch.cuda.Stream | None = None) -> None:
        """Copy batch (if given) into the inputs and replay, on `stream` (default: current).
        The replay stream first waits for the current stream, where the batch was made, and
        the current stream then waits for the replay: what the caller does next (the next
        lr fill, a clone or .item() of the loss sum) is ordered after it."""
        caller = torch.cuda.current_stream(self.device)
        stream = caller if stream is None else stream
        if stream != caller:
            stream.wait_stream(caller)
        self._replay_streams.add(stream)
        with torch.cuda.stream(stream):
            if batch is not None:
                self._load(batch, stream)
            self.graph.replay()
        if stream != caller:
            caller.wait_stream(stream)

    def close(self) -> None:
        """Wait for this step's work, drop the graph (and its pool) and the references, and
        give the cache back to the device if this process holds much of it (release_cache)."""
        for stream in (self.stream, *self._replay_streams):
            stream.synchronize()
        if self.graph is not None:
            self.graph.reset()
        self.graph, self.step, self.inputs, self.keep = None, None, (), ()
        self._replay_streams = set()
        release_cache(self.device)


def graphed_step(step: Callable[[torch.Tensor, torch.Tensor], None], batch_shape: Sequence[int], device: torch.device,
                 dtype: torch.dtype = torch.float32, memory_format: torch.memory_format = torch.channels_last,
                 keep: Sequence = (), seed: int | None = None, stream: torch.cuda.Stream | None = None) -> GraphedStep:
    """A GraphedStep running `step(x, y)` on static buffers for images of `batch_shape`
    (B, C, H, W) and their B labels; `keep` holds what the step writes (model, optimizer)."""
    x = torch.empty(tuple(batch_shape), dtype=dtype, device=device, memory_format=memory_format)
    y = torch.empty(batch_shape[0], dtype=torch.long, device=device)
    return GraphedStep(functools.partial(step, x, y), (x, y), keep=keep, seed=seed, stream=stream)
