"""The process pool: shards made across spawned worker processes, each holding its boundary model for its life.
A worker ends with the process that started it, however that ends (SIGKILL included); Ctrl-C and SIGTERM stop
the workers at once, and the first error stops the run, keeping the shards already written."""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time

from .maker import Job, ShardMaker


def run_in_pool(job: Job, num_workers: int, todo: list[int], shards: dict, bar) -> list[dict]:
    """Shards across ``num_workers`` spawned processes (each loads the model once); progress per image. The
    first error stops the run (shards not started are cancelled; those written are kept for a rerun); an
    interruption (Ctrl-C, or SIGTERM made an exception by the command) stops the workers at once."""
    context = multiprocessing.get_context("spawn")  # no fork of a process holding torch threads
    queue = context.Queue()
    results = []
    pool = concurrent.futures.ProcessPoolExecutor(
        num_workers, mp_context=context, initializer=_init_worker, initargs=(job, queue, os.getpid())
    )
    try:
        with _stop_signals_held():  # no worker left half-started, none interrupted in its start-up
            pending = {pool.submit(_run_shard, s, shards[s]) for s in todo}
        try:
            while pending:
                done, pending = concurrent.futures.wait(pending, timeout=0.2, return_when="FIRST_COMPLETED")
                while not queue.empty():
                    bar.update(queue.get())
                results += [future.result() for future in done]  # a worker's error (a full disk...) stops it
        except concurrent.futures.process.BrokenProcessPool:
            raise OSError(
                "a worker process died (out of memory?); the shards written are kept: rerun to resume"
            ) from None
        finally:
            for future in pending:
                future.cancel()
    except (KeyboardInterrupt, SystemExit):
        _stop_workers(pool)
        raise
    finally:
        pool.shutdown(wait=True)  # after an error, the shards being made are finished and kept
    while not queue.empty():
        bar.update(queue.get())
    return results


@contextlib.contextmanager
def _stop_signals_held():
    """Hold SIGINT and SIGTERM back from this thread for the block (one that arrives meanwhile is delivered after
    it), so that starting a worker is never cut off half-way. The processes started inherit the mask: Ctrl-C,
    sent to the whole process group, never reaches a worker; each unblocks SIGTERM when it starts running our
    code. No-op where signal masks do not exist."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _stop_workers(pool: concurrent.futures.ProcessPoolExecutor) -> None:
    """Terminate the pool's processes now (the shard each was writing is dropped; its temporary is removed by
    the next run) and wait for them to end."""
    processes = list((getattr(pool, "_processes", None) or {}).values())  # Python 3.14: terminate_workers()
    manager = getattr(pool, "_executor_manager_thread", None)
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        with contextlib.suppress(Exception):
            process.terminate()
    for process in processes:
        with contextlib.suppress(Exception):
            process.join(5)
            if process.is_alive():
                process.kill()
                process.join(5)
    if manager is not None:
        manager.join(5)


# ----------------------------------------------------------------------------------- in the worker process

_MAKER: ShardMaker | None = None
_MAKER_ERROR = ""


def _die_with_parent(parent: int) -> None:
    """End this worker process when ``parent`` (the process running the pool) ends, however it ends (SIGKILL
    included): Linux's parent-death signal, and a thread that watches for a new parent pid (other systems, and a
    parent gone before the signal was set)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)  # orphaned: what it would write, nobody merges; a rerun removes its temporaries

    if os.getppid() != parent:
        os._exit(1)
    threading.Thread(target=watch, name="watch-parent", daemon=True).start()


def _init_worker(job: Job, queue, parent: int) -> None:
    global _MAKER, _MAKER_ERROR
    if hasattr(signal, "pthread_sigmask"):  # held while the parent started us (see _stop_signals_held)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the process group: the parent stops us
    try:
        _MAKER = ShardMaker(job, queue)
    except Exception as error:  # noqa: BLE001 - reported by the first shard, in one line, not as a broken pool
        _MAKER_ERROR = str(error)


def _run_shard(shard: int, entries: list[tuple[str, str | int]]) -> dict:
    if _MAKER is None:
        raise ValueError(f"a worker process could not start: {_MAKER_ERROR}")
    return _MAKER.make_shard(shard, entries)


__all__ = ["run_in_pool"]
