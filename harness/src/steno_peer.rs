//! Peer benchmark built on the `steno` saga library.
//!
//! The saga has the same shape as ours:
//!
//! ```text
//!                   reservar_presupuesto (A)
//!                    /                  \
//!   reservar_influencers (B)      abrir_tracking (C)
//! ```
//!
//! B and C both depend on A and run in parallel.  Steno insists that a DAG
//! end in a single node, so a constant node (no action, no undo) joins them.  Every action and every undo
//! action is trivial: it returns a small serializable value at once and does
//! no I/O.  When the saga parameter `fail` is true, C returns a business
//! failure (`ActionError`), so steno unwinds the saga: it undoes B (once B has
//! finished) and then A.
//!
//! All sagas of one run go through a single SEC (saga execution coordinator)
//! backed by steno's in-memory store, with one action registry and one
//! prebuilt DAG per distinct parameter value.  A run creates its own SEC and
//! shuts it down at the end, because the SEC keeps every finished saga in
//! memory for its whole life: a fresh SEC per run keeps runs comparable.
//!
//! The functions here spawn tasks, so they must be awaited inside a tokio
//! runtime; the benchmark drives them from a multi-thread runtime with two
//! worker threads.

use serde::Deserialize;
use serde::Serialize;
use std::sync::Arc;
use steno::Action;
use steno::ActionContext;
use steno::ActionError;
use steno::ActionFunc;
use steno::ActionRegistry;
use steno::DagBuilder;
use steno::Node;
use steno::SagaDag;
use steno::SagaId;
use steno::SagaName;
use steno::SagaResult;
use steno::SagaType;
use steno::SecClient;
use steno::UndoResult;

use crate::load::{self, Ended, Workload};
use crate::meter::{self, Watched};
use crate::report::Run;

/// Saga type: ties the actions to their per-saga context (none is needed).
#[derive(Debug)]
struct CampaignSaga;

impl SagaType for CampaignSaga {
    type ExecContextType = ();
}

/// Saga parameters.
#[derive(Debug, Serialize, Deserialize)]
struct CampaignParams {
    /// When true, `abrir_tracking` fails and the saga is unwound.
    fail: bool,
}

/// Output of `reservar_presupuesto`.
#[derive(Debug, Serialize, Deserialize)]
struct BudgetHold {
    amount: u64,
}

/// Output of `reservar_influencers`.
#[derive(Debug, Serialize, Deserialize)]
struct InfluencerHold {
    slots: u32,
}

/// Output of `abrir_tracking`.
#[derive(Debug, Serialize, Deserialize)]
struct TrackingHandle {
    id: u32,
}

/// Business error returned by `abrir_tracking` when asked to fail.
#[derive(Debug, Serialize, Deserialize)]
struct TrackingRejected {
    reason: String,
}

async fn reservar_presupuesto(_ctx: ActionContext<CampaignSaga>) -> Result<BudgetHold, ActionError> {
    Ok(BudgetHold { amount: 1000 })
}

async fn liberar_presupuesto(_ctx: ActionContext<CampaignSaga>) -> UndoResult {
    Ok(())
}

async fn reservar_influencers(_ctx: ActionContext<CampaignSaga>) -> Result<InfluencerHold, ActionError> {
    Ok(InfluencerHold { slots: 3 })
}

async fn liberar_influencers(_ctx: ActionContext<CampaignSaga>) -> UndoResult {
    Ok(())
}

async fn abrir_tracking(ctx: ActionContext<CampaignSaga>) -> Result<TrackingHandle, ActionError> {
    let params: CampaignParams = ctx.saga_params()?;
    if params.fail {
        return Err(ActionError::action_failed(TrackingRejected { reason: String::from("tracking rejected") }));
    }
    Ok(TrackingHandle { id: 7 })
}

async fn cerrar_tracking(_ctx: ActionContext<CampaignSaga>) -> UndoResult {
    Ok(())
}

/// Everything one run shares across its sagas: the SEC, the action registry
/// and the two prebuilt DAGs (steno binds the saga parameters into the DAG,
/// so there is one DAG per distinct parameter value).
struct Peer {
    sec: SecClient,
    registry: Arc<ActionRegistry<CampaignSaga>>,
    dag_ok: Arc<SagaDag>,
    dag_fail: Arc<SagaDag>,
    context: Arc<()>,
}

impl Peer {
    /// Creates the SEC (with a discarding logger and the in-memory store),
    /// registers the actions and builds the DAGs.  Must be called inside a
    /// tokio runtime, because the SEC runs as a spawned task.
    fn new() -> Peer {
        let log = slog::Logger::root(slog::Discard, slog::o!());
        let sec = steno::sec(log, Arc::new(steno::InMemorySecStore::new()));

        let presupuesto: Arc<dyn Action<CampaignSaga>> =
            ActionFunc::new_action("reservar_presupuesto", reservar_presupuesto, liberar_presupuesto);
        let influencers: Arc<dyn Action<CampaignSaga>> =
            ActionFunc::new_action("reservar_influencers", reservar_influencers, liberar_influencers);
        let tracking: Arc<dyn Action<CampaignSaga>> =
            ActionFunc::new_action("abrir_tracking", abrir_tracking, cerrar_tracking);

        let mut builder = DagBuilder::new(SagaName::new("campaign"));
        builder.append(Node::action("presupuesto", "ReservarPresupuesto", &*presupuesto));
        builder.append_parallel(vec![
            Node::action("influencers", "ReservarInfluencers", &*influencers),
            Node::action("tracking", "AbrirTracking", &*tracking),
        ]);
        // Steno requires a DAG to end in exactly one node, whose output is the
        // saga's output; a constant node joins B and C at no extra action.
        builder.append(Node::constant("done", serde_json::Value::Null));
        let dag = builder.build().expect("campaign DAG is valid");

        let mut registry = ActionRegistry::new();
        registry.register(presupuesto);
        registry.register(influencers);
        registry.register(tracking);

        let with_params = |fail: bool| {
            let params = serde_json::to_value(CampaignParams { fail }).expect("parameters serialize");
            Arc::new(SagaDag::new(dag.clone(), params))
        };

        Peer {
            sec,
            registry: Arc::new(registry),
            dag_ok: with_params(false),
            dag_fail: with_params(true),
            context: Arc::new(()),
        }
    }

    /// Creates one saga, starts it and waits for its result.
    async fn run_saga(&self, fail: bool) -> SagaResult {
        let dag = if fail { &self.dag_fail } else { &self.dag_ok };
        let id = SagaId::new_v4();
        // `saga_create` hands back a future that resolves once the saga has
        // ended; `saga_start` sets the saga running.
        let done = self
            .sec
            .saga_create(id, Arc::clone(&self.context), Arc::clone(dag), Arc::clone(&self.registry))
            .await
            .expect("saga create failed");
        self.sec.saga_start(id).await.expect("saga start failed");
        done.await
    }

    /// Runs one saga and tells how it ended.
    async fn run_one(&self, fail: bool) -> Ended {
        match self.run_saga(fail).await.kind {
            Ok(_) => Ended::Completed,
            Err(err) => {
                // Undo actions here never fail, so an unwound saga is fully
                // compensated.
                assert!(err.undo_failure.is_none(), "undo failed: {err:?}");
                Ended::Compensated
            }
        }
    }

    /// Shuts the SEC down once every saga of the run has ended.
    async fn shutdown(self: Arc<Self>) {
        let peer = Arc::into_inner(self).expect("a saga still holds the peer");
        peer.sec.shutdown().await;
    }
}

/// Runs `workload` through one steno SEC (in-memory store), after a warm-up, and reports it.
pub async fn run(workload: &Workload) -> anyhow::Result<Run> {
    let peer = Arc::new(Peer::new());
    let saga = {
        let peer = Arc::clone(&peer);
        move |_: usize, fail: bool| {
            let peer = Arc::clone(&peer);
            async move { Ok(peer.run_one(fail).await) }
        }
    };
    let warm = Workload { load: load::Load::Closed { clients: 4, sagas: 50 }, fail_percent: 0 };
    load::drive(&warm, saga.clone()).await;
    let watched = vec![Watched::this("harness (steno, clients)")];
    let before = meter::cpu(&watched);
    let sample = load::drive(workload, saga).await;
    let after = meter::cpu(&watched);
    let mut run = Run::new("steno", workload, &sample);
    run.processes = meter::costs(&watched, &before, &after);
    peer.shutdown().await;
    Ok(run)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use steno::SagaNodeEventType;
    use steno::SagaNodeId;

    /// Names of the saga nodes whose undo action finished, per the saga log.
    fn undone(peer: &Peer, result: &SagaResult) -> Vec<&'static str> {
        let names = ["presupuesto", "influencers", "tracking"];
        let ids: Vec<SagaNodeId> = names.iter().map(|n| SagaNodeId::from(peer.dag_ok.get_index(n).unwrap())).collect();
        let mut out = Vec::new();
        for event in result.saga_log.events() {
            if let SagaNodeEventType::UndoFinished = event.event_type {
                if let Some(k) = ids.iter().position(|id| *id == event.node_id) {
                    out.push(names[k]);
                }
            }
        }
        out.sort();
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn completes_or_compensates() {
        let peer = Arc::new(Peer::new());

        let ok = peer.run_saga(false).await;
        assert!(ok.kind.is_ok());
        assert!(undone(&peer, &ok).is_empty());

        // A failing saga undoes B and A, never C (whose action failed).
        for _ in 0..50 {
            let failed = peer.run_saga(true).await;
            let err = failed.kind.as_ref().expect_err("saga should unwind");
            assert_eq!(err.error_node_name.as_ref(), "tracking");
            assert_eq!(undone(&peer, &failed), vec!["influencers", "presupuesto"]);
        }
        peer.shutdown().await;

        let run = super::run(&Workload { load: load::Load::Closed { clients: 8, sagas: 200 }, fail_percent: 25 })
            .await
            .expect("a steno run");
        assert_eq!((run.completed, run.compensated, run.errors), (150, 50, 0));
    }
}
