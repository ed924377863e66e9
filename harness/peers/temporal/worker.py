"""Runs a Temporal worker for the CrearCampana saga until SIGTERM or SIGINT.

    python worker.py --address 127.0.0.1:7233 --task-queue crear-campana [--namespace default]

Prints `ready` on stdout once the worker is connected and polling, and exits 0 after a
graceful shutdown. Activities are `async def`, so they run on the event loop and the worker
needs no thread pool.
"""

import argparse
import asyncio
import os
import signal
import sys

from temporalio.client import Client
from temporalio.worker import Worker

from campana import ACTIVITIES, CrearCampana


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", required=True, help="the server's frontend, host:port")
    parser.add_argument("--task-queue", required=True)
    parser.add_argument("--namespace", default="default")
    args = parser.parse_args()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    client = await Client.connect(args.address, namespace=args.namespace)
    worker = Worker(
        client,
        task_queue=args.task_queue,
        workflows=[CrearCampana],
        activities=ACTIVITIES,
    )
    # Entering the context starts the pollers; leaving it shuts the worker down gracefully.
    async with worker:
        print("ready", flush=True)
        await stop.wait()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    # The worker has shut down gracefully. Skip the interpreter's teardown: the SDK's native
    # threads can abort it there ("PyGILState_Release ... finalizing").
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
