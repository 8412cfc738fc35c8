//! Value parsers for the command line's closed sets. Each list comes from the library that owns
//! the set (the attack registry, `Norm::NAMES`, ...), so `--help` shows the values the library
//! accepts and a wrong value is a usage error (exit code 2) that lists them.

use std::fmt::Display;
use std::str::FromStr;

use bulwark_attack_core::ATTACKS;
use bulwark_trainer::{BackendKind, DATASETS, Method, SweepReg, Workload};
use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};

/// One of `names`, parsed by the library's `FromStr`.
pub fn closed<T>(names: &'static [&'static str]) -> impl TypedValueParser<Value = T>
where
    T: FromStr + Clone + Send + Sync + 'static,
    T::Err: Display,
{
    PossibleValuesParser::new(names).try_map(|s| s.parse::<T>().map_err(|e| e.to_string()))
}

/// A registered attack's name or alias (the registry in `bulwark-attack-core`), with its summary.
pub fn attack() -> PossibleValuesParser {
    PossibleValuesParser::new(ATTACKS.iter().flat_map(|entry| {
        entry.names().map(move |name| {
            let help = if name == entry.name {
                entry.summary.to_string()
            } else {
                format!("{} (alias)", entry.name)
            };
            PossibleValue::new(name).help(help)
        })
    }))
}

/// A compiled-in or known backend name.
pub fn backend() -> impl TypedValueParser<Value = BackendKind> {
    PossibleValuesParser::new(BackendKind::ALL.map(BackendKind::name))
        .try_map(|s| s.parse::<BackendKind>().map_err(|e| e.to_string()))
}

/// A zoo model's name (`bulwark models list`).
pub fn model() -> PossibleValuesParser {
    PossibleValuesParser::new(bulwark_models::models().iter().map(|m| m.name))
}

/// A dataset a run or an evaluation can read.
pub fn dataset() -> PossibleValuesParser {
    PossibleValuesParser::new(DATASETS)
}

/// A training method's name.
pub fn method() -> PossibleValuesParser {
    PossibleValuesParser::new(Method::NAMES.split(", "))
}

/// A regularizer a sweep can vary.
pub fn sweep_reg() -> PossibleValuesParser {
    PossibleValuesParser::new(SweepReg::NAMES.split(", "))
}

/// A benchmark workload.
pub fn workload() -> PossibleValuesParser {
    PossibleValuesParser::new(Workload::ALL.map(Workload::name))
}
