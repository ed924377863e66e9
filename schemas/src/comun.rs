//! Types shared by several messages: money, the correlation header, the brand and the influencer
//! as the public API names them.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::codec::avro_message;

/// An amount of money in minor currency units (centavos), as an Avro `long`.
///
/// Integers, because sums and comparisons of budgets must be exact; the public API's
/// `"presupuesto": 15000` is 1_500_000 centavos.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Centavos(pub i64);

/// Whether a command runs a step's action or its compensation (`TipoPaso.avsc`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TipoPaso {
    /// The step's action.
    Accion,
    /// The step's compensation.
    Compensacion,
}

/// Correlation header of every command and reply (`Correlacion.avsc`): a reply answers exactly
/// one `(saga_id, step, attempt)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Correlacion {
    /// The saga instance.
    pub saga_id: Uuid,
    /// Name of the saga definition, e.g. `crear_campana`.
    pub saga_type: String,
    /// Stable name of the step within the saga definition.
    pub step: String,
    /// Attempt number of this step's action or compensation, from 1.
    pub attempt: u32,
    /// Action or compensation.
    pub kind: TipoPaso,
    /// Id of this message; participants deduplicate on it.
    pub message_id: Uuid,
    /// Topic the participant answers on; `None` on replies.
    pub reply_to: Option<String>,
    /// Simple Avro name of the body's record, e.g. `ReservarPresupuesto`.
    pub message_type: String,
}

/// The brand that funds a campaign (`Marca.avsc`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marca {
    /// The brand's id in the marca context.
    pub id_marca: Uuid,
    /// The brand's display name.
    pub nombre_marca: String,
}

/// An influencer as the public API names it (`Influencer.avsc`); `(nombre, plataforma)`
/// identifies it within a campaign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Influencer {
    /// Display name.
    pub nombre: String,
    /// Social platform, e.g. `Instagram`.
    pub plataforma: String,
    /// Audience size on that platform.
    pub seguidores: u32,
    /// Content category, e.g. `Fitness`.
    pub categoria: String,
}

avro_message!(TipoPaso, Correlacion, Marca, Influencer);
