"""Drives CrearCampana sagas against a Temporal server and prints one JSON line of results.

Closed loop (C clients, each starting its next saga when its last one ended, N sagas in all):

    python drive.py --address 127.0.0.1:7233 --task-queue crear-campana \
        --sagas 1000 --concurrency 16 --fail-ratio 0.1 [--warmup 5]

Open loop (arrivals at t0 + i/R for S seconds, whatever the system's pace):

    python drive.py --address ... --task-queue ... --rate 200 --duration 10 --fail-ratio 0

Saga i fails (C refuses, the saga compensates) iff (i % 100) < round(fail_ratio * 100).
Each saga is started with `execute_workflow` (start, then wait for the result). Latency runs
from just before the start (in the open loop: from the intended start) to the result, in
microseconds. Warm-up sagas run first and are not counted. The JSON line holds: sagas,
concurrency or rate/duration, seconds (first start to last end), completed, compensated,
errors, first_error, cpu_seconds (this process, measured part only) and latencies_us.
"""

import argparse
import asyncio
import json
import os
import resource
import sys
import time
import uuid

from temporalio.client import Client

WORKFLOW_NAME = "CrearCampana"


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Driver:
    def __init__(self, client: Client, task_queue: str, fail_percent: int):
        self.client = client
        self.task_queue = task_queue
        self.fail_percent = fail_percent
        self.prefix = f"crear-campana-{uuid.uuid4().hex[:12]}"
        self.reset()

    def reset(self) -> None:
        self.completed = 0
        self.compensated = 0
        self.errors = 0
        self.first_error = None
        self.latencies_us = []
        self.last_end = 0.0

    async def saga(self, tag: str, i: int, started: float) -> None:
        """Runs saga `i` and records its outcome; latency counts from `started` (monotonic)."""
        req = {"id": f"{tag}-{i}", "fail": (i % 100) < self.fail_percent}
        try:
            result = await self.client.execute_workflow(
                WORKFLOW_NAME,
                req,
                id=f"{self.prefix}-{tag}-{i}",
                task_queue=self.task_queue,
            )
            if result == "completed":
                self.completed += 1
            elif result == "compensated":
                self.compensated += 1
            else:
                self.fail(f"unexpected result {result!r}")
        except Exception as e:  # any failure of the client call counts as an error
            self.fail(f"{type(e).__name__}: {e}")
        end = time.monotonic()
        self.last_end = max(self.last_end, end)
        self.latencies_us.append(max(1, int((end - started) * 1e6)))

    def fail(self, message: str) -> None:
        self.errors += 1
        if self.first_error is None:
            self.first_error = message

    async def closed(self, tag: str, sagas: int, concurrency: int) -> None:
        next_i = 0

        async def client_loop() -> None:
            nonlocal next_i
            while next_i < sagas:
                i = next_i
                next_i += 1
                await self.saga(tag, i, time.monotonic())

        await asyncio.gather(*(client_loop() for _ in range(max(1, concurrency))))

    async def open(self, tag: str, sagas: int, rate: float) -> float:
        """Starts saga i at t0 + i/rate; returns t0."""
        t0 = time.monotonic()
        tasks = []
        for i in range(sagas):
            due = t0 + i / rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(self.saga(tag, i, due)))
        await asyncio.gather(*tasks)
        return t0


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", required=True, help="the server's frontend, host:port")
    parser.add_argument("--task-queue", required=True)
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--sagas", type=int, help="closed loop: sagas in all")
    parser.add_argument("--concurrency", type=int, default=1, help="closed loop: clients")
    parser.add_argument("--rate", type=float, help="open loop: arrivals a second")
    parser.add_argument("--duration", type=float, help="open loop: seconds of arrivals")
    parser.add_argument("--fail-ratio", type=float, default=0.0)
    parser.add_argument("--warmup", type=int, default=5, help="uncounted sagas run first")
    args = parser.parse_args()

    open_loop = args.rate is not None
    if open_loop:
        if args.duration is None or args.rate <= 0 or args.duration <= 0:
            parser.error("--rate needs a positive --duration (and a positive rate)")
        sagas = max(1, round(args.rate * args.duration))
    else:
        if args.sagas is None or args.sagas <= 0:
            parser.error("give --sagas N (closed loop) or --rate R --duration S (open loop)")
        sagas = args.sagas
    fail_percent = round(args.fail_ratio * 100)

    client = await Client.connect(args.address, namespace=args.namespace)
    driver = Driver(client, args.task_queue, fail_percent)

    if args.warmup > 0:
        await driver.closed("warmup", args.warmup, min(args.warmup, max(1, args.concurrency)))
        if driver.errors:
            print(f"drive.py: warm-up failed: {driver.first_error}", file=sys.stderr)
        driver.reset()

    cpu_before = cpu_seconds()
    if open_loop:
        began = await driver.open("run", sagas, args.rate)
    else:
        began = time.monotonic()
        await driver.closed("run", sagas, args.concurrency)
    cpu = cpu_seconds() - cpu_before

    out = {"sagas": sagas}
    if open_loop:
        out.update(rate=args.rate, duration=args.duration)
    else:
        out.update(concurrency=args.concurrency)
    out.update(
        seconds=max(driver.last_end - began, 1e-9),
        completed=driver.completed,
        compensated=driver.compensated,
        errors=driver.errors,
        first_error=driver.first_error,
        cpu_seconds=cpu,
        latencies_us=driver.latencies_us,
    )
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
    # The SDK's native threads can outlive the event loop and abort the interpreter while it
    # tears down ("PyGILState_Release ... finalizing"), turning a good run into a crash.
    # Everything is printed and flushed by now, so skip the teardown.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
