//! The configuration-file form of penalties and constraints (serde): one flat table per entry,
//! `kind` plus that kind's settings and an optional `select`, unknown or misplaced keys refused.
//!
//! ```toml
//! [[penalties]]
//! kind = "elastic-net"
//! lambda = 1e-4
//! l1_ratio = 0.5
//! select = { include = ["fc*.weight"] }
//!
//! [[constraints]]
//! kind = "max-norm"
//! max = 3.0
//! ```

use serde::{Deserialize, Serialize};

use crate::constraint::{Constraint, ConstraintKind};
use crate::penalty::{Penalty, PenaltyKind};
use crate::select::ParamSelection;

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum PenaltyName {
    L1,
    L2,
    ElasticNet,
    GroupLasso,
    Orthogonality,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PenaltyFile {
    kind: PenaltyName,
    lambda: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    l1_ratio: Option<f64>,
    #[serde(default)]
    select: ParamSelection,
}

impl TryFrom<PenaltyFile> for Penalty {
    type Error = String;
    fn try_from(f: PenaltyFile) -> Result<Self, String> {
        let kind = match (f.kind, f.l1_ratio) {
            (PenaltyName::ElasticNet, Some(l1_ratio)) => PenaltyKind::ElasticNet { l1_ratio },
            (PenaltyName::ElasticNet, None) => {
                return Err("penalty `elastic-net` needs `l1_ratio`".into());
            }
            (other, Some(_)) => {
                return Err(format!(
                    "`l1_ratio` belongs to `elastic-net`, not to `{}`",
                    other.as_str()
                ));
            }
            (PenaltyName::L1, None) => PenaltyKind::L1,
            (PenaltyName::L2, None) => PenaltyKind::L2,
            (PenaltyName::GroupLasso, None) => PenaltyKind::GroupLasso,
            (PenaltyName::Orthogonality, None) => PenaltyKind::Orthogonality,
        };
        Ok(Penalty::new(kind, f.lambda).on(f.select))
    }
}

impl From<Penalty> for PenaltyFile {
    fn from(p: Penalty) -> Self {
        let (kind, l1_ratio) = match p.kind {
            PenaltyKind::L1 => (PenaltyName::L1, None),
            PenaltyKind::L2 => (PenaltyName::L2, None),
            PenaltyKind::ElasticNet { l1_ratio } => (PenaltyName::ElasticNet, Some(l1_ratio)),
            PenaltyKind::GroupLasso => (PenaltyName::GroupLasso, None),
            PenaltyKind::Orthogonality => (PenaltyName::Orthogonality, None),
        };
        Self {
            kind,
            lambda: p.lambda,
            l1_ratio,
            select: p.selection,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum ConstraintName {
    MaxNorm,
    UnitNorm,
    NonNeg,
    DecoupledDecay,
    ProxL1,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConstraintFile {
    kind: ConstraintName,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    weight_decay: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lambda: Option<f64>,
    #[serde(default)]
    select: ParamSelection,
}

impl TryFrom<ConstraintFile> for Constraint {
    type Error = String;
    fn try_from(f: ConstraintFile) -> Result<Self, String> {
        let name = f.kind.as_str();
        // Exactly the setting the kind takes, nothing else.
        let wanted: Option<&str> = match f.kind {
            ConstraintName::MaxNorm => Some("max"),
            ConstraintName::DecoupledDecay => Some("weight_decay"),
            ConstraintName::ProxL1 => Some("lambda"),
            ConstraintName::UnitNorm | ConstraintName::NonNeg => None,
        };
        for (key, value) in [
            ("max", f.max),
            ("weight_decay", f.weight_decay),
            ("lambda", f.lambda),
        ] {
            match (Some(key) == wanted, value) {
                (true, None) => return Err(format!("constraint `{name}` needs `{key}`")),
                (false, Some(_)) => {
                    return Err(format!("constraint `{name}` takes no `{key}`"));
                }
                _ => {}
            }
        }
        let kind = match f.kind {
            ConstraintName::MaxNorm => ConstraintKind::MaxNorm {
                max: f.max.unwrap_or_default(),
            },
            ConstraintName::UnitNorm => ConstraintKind::UnitNorm,
            ConstraintName::NonNeg => ConstraintKind::NonNeg,
            ConstraintName::DecoupledDecay => ConstraintKind::DecoupledDecay {
                weight_decay: f.weight_decay.unwrap_or_default(),
            },
            ConstraintName::ProxL1 => ConstraintKind::ProxL1 {
                lambda: f.lambda.unwrap_or_default(),
            },
        };
        Ok(Constraint::new(kind).on(f.select))
    }
}

impl From<Constraint> for ConstraintFile {
    fn from(c: Constraint) -> Self {
        let mut f = ConstraintFile {
            kind: ConstraintName::NonNeg,
            max: None,
            weight_decay: None,
            lambda: None,
            select: c.selection,
        };
        match c.kind {
            ConstraintKind::MaxNorm { max } => {
                (f.kind, f.max) = (ConstraintName::MaxNorm, Some(max))
            }
            ConstraintKind::UnitNorm => f.kind = ConstraintName::UnitNorm,
            ConstraintKind::NonNeg => f.kind = ConstraintName::NonNeg,
            ConstraintKind::DecoupledDecay { weight_decay } => {
                (f.kind, f.weight_decay) = (ConstraintName::DecoupledDecay, Some(weight_decay));
            }
            ConstraintKind::ProxL1 { lambda } => {
                (f.kind, f.lambda) = (ConstraintName::ProxL1, Some(lambda));
            }
        }
        f
    }
}

impl PenaltyName {
    fn as_str(self) -> &'static str {
        match self {
            PenaltyName::L1 => "l1",
            PenaltyName::L2 => "l2",
            PenaltyName::ElasticNet => "elastic-net",
            PenaltyName::GroupLasso => "group-lasso",
            PenaltyName::Orthogonality => "orthogonality",
        }
    }
}

impl ConstraintName {
    fn as_str(self) -> &'static str {
        match self {
            ConstraintName::MaxNorm => "max-norm",
            ConstraintName::UnitNorm => "unit-norm",
            ConstraintName::NonNeg => "non-neg",
            ConstraintName::DecoupledDecay => "decoupled-decay",
            ConstraintName::ProxL1 => "prox-l1",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::select::ParamKind;

    #[test]
    fn penalties_and_constraints_round_trip_through_json() {
        let p = Penalty::new(PenaltyKind::ElasticNet { l1_ratio: 0.25 }, 1e-3)
            .on(ParamSelection::paths(["fc1.weight"]));
        let text = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<Penalty>(&text).unwrap(), p);
        let c = Constraint::new(ConstraintKind::MaxNorm { max: 2.0 });
        let text = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<Constraint>(&text).unwrap(), c);
    }

    #[test]
    fn defaults_and_errors() {
        let p: Penalty = serde_json::from_str(r#"{"kind":"l2","lambda":0.1}"#).unwrap();
        assert_eq!(p.selection, ParamSelection::weights());
        let p: Penalty =
            serde_json::from_str(r#"{"kind":"l1","lambda":0.1,"select":{"include":["fc1.*"]}}"#)
                .unwrap();
        assert_eq!(p.selection.kinds, vec![ParamKind::Weight]);
        for (bad, want) in [
            (r#"{"kind":"elastic-net","lambda":0.1}"#, "needs `l1_ratio`"),
            (
                r#"{"kind":"l2","lambda":0.1,"l1_ratio":0.5}"#,
                "belongs to `elastic-net`",
            ),
            (r#"{"kind":"l2","lamda":0.1}"#, "unknown field `lamda`"),
            (r#"{"kind":"l3","lambda":0.1}"#, "unknown variant `l3`"),
        ] {
            let e = serde_json::from_str::<Penalty>(bad)
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{bad}: {e}");
        }
        for (bad, want) in [
            (r#"{"kind":"max-norm"}"#, "needs `max`"),
            (r#"{"kind":"non-neg","max":1.0}"#, "takes no `max`"),
            (
                r#"{"kind":"prox-l1","lambda":1.0,"select":{"kinds":["bias"],"x":1}}"#,
                "unknown field `x`",
            ),
        ] {
            let e = serde_json::from_str::<Constraint>(bad)
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }
}
