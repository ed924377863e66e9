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

impl Centavos {
    /// The amount `value`, in currency units with at most two decimals (a JSON number such as
    /// `15000`, `99.99` or `-5.5`), in centavos: `15000.10` is `Centavos(1_500_010)`.
    ///
    /// The decimals counted are those of the shortest decimal that reads back as `value`, the
    /// number as a JSON text wrote it: `15000.10` has one (`15000.1`) even though the binary
    /// float is not exactly that, and the result is exact, never a product rounded in floating
    /// point. `10.005` has three and is refused, as is `0.1 + 0.2` (`0.30000000000000004`).
    /// The sign is kept; callers that want a positive or bounded amount check it on the result.
    pub fn from_decimal(value: f64) -> Result<Centavos, ImporteInvalido> {
        minor_units(value, 2).map(Centavos)
    }

    /// The amount in currency units as a JSON number, the form the public API takes it in and
    /// answers with: `Centavos(1_500_000)` is `15000`, `Centavos(1_500_050)` is `15000.5`.
    ///
    /// A whole amount is a JSON integer (no `.0`); otherwise the float nearest to the decimal,
    /// which JSON writes as that decimal (shortest round trip), so
    /// `from_decimal(to_decimal(c))` is `c` for every amount below 2^53 centavos.
    pub fn to_decimal(self) -> serde_json::Number {
        let (units, cents) = (self.0 / 100, (self.0 % 100).abs());
        if cents == 0 {
            return serde_json::Number::from(units);
        }
        let sign = if self.0 < 0 { "-" } else { "" };
        format!("{sign}{}.{cents:02}", units.abs())
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .unwrap_or_else(|| serde_json::Number::from(units))
    }
}

/// `value` in minor units of a currency with `decimals` decimals, exactly, as
/// [`Centavos::from_decimal`] counts them (which is this with two).
pub(crate) fn minor_units(value: f64, decimals: u32) -> Result<i64, ImporteInvalido> {
    if !value.is_finite() {
        return Err(ImporteInvalido::FueraDeRango);
    }
    // `Display` of an `f64` is the shortest round-trip decimal, without exponent.
    let text = value.abs().to_string();
    let (units, fraction) = text.split_once('.').unwrap_or((&text, ""));
    let decimals_len = decimals as usize;
    if fraction.len() > decimals_len {
        return Err(ImporteInvalido::DemasiadosDecimales);
    }
    let units: i64 = units.parse().map_err(|_| ImporteInvalido::FueraDeRango)?;
    let minor: i64 = if decimals_len == 0 {
        0
    } else {
        format!("{fraction:0<decimals_len$}").parse().map_err(|_| ImporteInvalido::FueraDeRango)?
    };
    let total = units
        .checked_mul(10i64.pow(decimals))
        .and_then(|c| c.checked_add(minor))
        .ok_or(ImporteInvalido::FueraDeRango)?;
    Ok(if value < 0.0 { -total } else { total })
}

/// Why [`Centavos::from_decimal`] refused an amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ImporteInvalido {
    /// More decimals than the currency's minor unit has (two for centavos).
    #[error("the amount has more decimals than the currency's minor unit")]
    DemasiadosDecimales,
    /// Not finite, or too large for an `i64` of centavos.
    #[error("the amount does not fit in 64-bit centavos")]
    FueraDeRango,
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_with_at_most_two_decimals_become_centavos() {
        let ok = |v: f64| Centavos::from_decimal(v).map(|c| c.0);
        assert_eq!(ok(15000.0), Ok(1_500_000));
        assert_eq!(ok(0.0), Ok(0));
        assert_eq!(ok(-0.0), Ok(0));
        assert_eq!(ok(99.99), Ok(9_999));
        assert_eq!(ok(0.01), Ok(1));
        assert_eq!(ok(49.9), Ok(4_990));
        // Binary floats that are not exactly their decimal: 0.29 * 100.0 is 28.999999999999996.
        assert_eq!(ok(15000.10), Ok(1_500_010));
        assert_eq!(ok(1.15), Ok(115));
        assert_eq!(ok(0.29), Ok(29));
        // Large amounts with cents, where `(v * 100.0).round()` would miss by more than a rounding
        // tolerance such as 1e-6: 134_244_431.02 * 100.0 is 13424443102.000002.
        assert_eq!(ok(134_244_431.02), Ok(13_424_443_102));
        assert_eq!(ok(9_999_999_999.99), Ok(999_999_999_999));
        assert_eq!(ok(-5.25), Ok(-525));
        assert_eq!(ok(-0.01), Ok(-1));
        // The largest i64 of centavos that an f64 of whole units reaches exactly.
        assert_eq!(ok(2f64.powi(53)), Ok(2i64.pow(53) * 100));
    }

    #[test]
    fn more_decimals_and_overflows_are_refused() {
        let err = |v: f64| Centavos::from_decimal(v).expect_err("refused");
        assert_eq!(err(10.005), ImporteInvalido::DemasiadosDecimales);
        assert_eq!(err(0.001), ImporteInvalido::DemasiadosDecimales);
        assert_eq!(err(-1.234), ImporteInvalido::DemasiadosDecimales);
        assert_eq!(err(0.1 + 0.2), ImporteInvalido::DemasiadosDecimales);
        assert_eq!(err(1e-7), ImporteInvalido::DemasiadosDecimales);
        // i64::MAX centavos is about 9.2e16 units.
        assert_eq!(err(1e17), ImporteInvalido::FueraDeRango);
        assert_eq!(err(-1e17), ImporteInvalido::FueraDeRango);
        assert_eq!(err(1e300), ImporteInvalido::FueraDeRango);
        assert_eq!(err(f64::MAX), ImporteInvalido::FueraDeRango);
        assert_eq!(err(f64::INFINITY), ImporteInvalido::FueraDeRango);
        assert_eq!(err(f64::NEG_INFINITY), ImporteInvalido::FueraDeRango);
        assert_eq!(err(f64::NAN), ImporteInvalido::FueraDeRango);
    }

    #[test]
    fn amounts_answer_as_the_json_numbers_they_were_read_from() {
        let json = |c: i64| serde_json::to_string(&Centavos(c).to_decimal()).expect("JSON");
        assert_eq!(json(1_500_000), "15000");
        assert_eq!(json(1_500_050), "15000.5");
        assert_eq!(json(1_500_010), "15000.1");
        assert_eq!(json(9_999), "99.99");
        assert_eq!(json(1), "0.01");
        assert_eq!(json(-525), "-5.25");
        assert_eq!(json(-1), "-0.01");
        assert_eq!(json(0), "0");
        for c in [1, 29, 115, 4_990, 1_500_010, 13_424_443_102, 999_999_999_999, -1, -525] {
            let back = Centavos::from_decimal(Centavos(c).to_decimal().as_f64().expect("number"));
            assert_eq!(back, Ok(Centavos(c)), "{c}");
        }
    }

    #[test]
    fn json_numbers_convert_as_written() {
        let from_json = |text: &str| {
            let v: serde_json::Value = serde_json::from_str(text).expect("JSON");
            Centavos::from_decimal(v.as_f64().expect("number"))
        };
        assert_eq!(from_json("15000"), Ok(Centavos(1_500_000)));
        assert_eq!(from_json("15000.10"), Ok(Centavos(1_500_010)));
        assert_eq!(from_json("15000.100"), Ok(Centavos(1_500_010)));
        assert_eq!(from_json("1.5e2"), Ok(Centavos(15_000)));
        assert_eq!(from_json("-7"), Ok(Centavos(-700)));
        assert_eq!(from_json("10.005"), Err(ImporteInvalido::DemasiadosDecimales));
        assert_eq!(from_json("100000000000000000000"), Err(ImporteInvalido::FueraDeRango));
    }
}
