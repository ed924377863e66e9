"""The CrearCampana saga as a Temporal workflow, with its three steps and their compensations.

Shape: A `reservar_presupuesto`, then B `reservar_influencers` and C `abrir_tracking` in
parallel (both after A). A request with `fail: true` makes C refuse with a non-retryable
ApplicationError; the workflow then undoes every step that succeeded, in reverse order, and
returns "compensated". Otherwise it returns "completed".

This module is loaded into the workflow sandbox, so it imports only what the workflow needs.
Activities use the SDK's default retry policy; each attempt gets a 10 s start-to-close timeout.
"""

import asyncio
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

WORKFLOW_NAME = "CrearCampana"
ACTIVITY_TIMEOUT = timedelta(seconds=10)


# The actions. Each is trivial: it answers at once with a small dict and does no I/O.

@activity.defn
async def reservar_presupuesto(req: dict) -> dict:
    return {"step": "presupuesto", "id": req["id"], "reservado": True}


@activity.defn
async def reservar_influencers(req: dict) -> dict:
    return {"step": "influencers", "id": req["id"], "reservado": True}


@activity.defn
async def abrir_tracking(req: dict) -> dict:
    if req.get("fail"):
        # A business refusal: retrying cannot change the answer. BENIGN marks it as expected,
        # so the worker logs it at debug level instead of a warning with a traceback.
        raise ApplicationError(
            "tracking refused",
            type="Refused",
            non_retryable=True,
            category=ApplicationErrorCategory.BENIGN,
        )
    return {"step": "tracking", "id": req["id"], "abierto": True}


# The compensations.

@activity.defn
async def liberar_presupuesto(req: dict) -> dict:
    return {"step": "presupuesto", "id": req["id"], "liberado": True}


@activity.defn
async def liberar_influencers(req: dict) -> dict:
    return {"step": "influencers", "id": req["id"], "liberado": True}


@activity.defn
async def cerrar_tracking(req: dict) -> dict:
    return {"step": "tracking", "id": req["id"], "cerrado": True}


ACTIVITIES = [
    reservar_presupuesto,
    reservar_influencers,
    abrir_tracking,
    liberar_presupuesto,
    liberar_influencers,
    cerrar_tracking,
]


@workflow.defn(name=WORKFLOW_NAME)
class CrearCampana:
    @workflow.run
    async def run(self, req: dict) -> str:
        # Compensations of the steps that succeeded so far, in the order the steps ran.
        done = []
        try:
            await self._step(reservar_presupuesto, req)
            done.append(liberar_presupuesto)

            # B and C run in parallel; wait for both to settle so that B's compensation, if
            # needed, only runs once B has finished.
            results = await asyncio.gather(
                self._step(reservar_influencers, req),
                self._step(abrir_tracking, req),
                return_exceptions=True,
            )
            for result, undo in zip(results, (liberar_influencers, cerrar_tracking)):
                if not isinstance(result, BaseException):
                    done.append(undo)
            for result in results:
                if isinstance(result, BaseException):
                    raise result
            return "completed"
        except Exception:
            # Undo in reverse order; compensations keep the default (unbounded) retries.
            for undo in reversed(done):
                await self._step(undo, req)
            return "compensated"

    @staticmethod
    async def _step(fn, req: dict) -> dict:
        return await workflow.execute_activity(fn, req, start_to_close_timeout=ACTIVITY_TIMEOUT)
