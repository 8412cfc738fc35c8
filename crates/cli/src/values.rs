//! Value parsers for the command line's closed sets. Each list comes from the library that owns
//! the set (the attack registry, `Norm::NAMES`, ...), so `--help` shows the values the library
//! accepts and a wrong value is a usage error (exit code 2) that lists them.

use std::fmt::Display;
use std::str::FromStr;

use bulwark_attack_core::ATTACKS;
use bulwark_trainer::{BackendKind, DATASETS, FOLDER_PREFIX, Method, SweepReg, Workload};
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

/// A dataset a run or an evaluation can read: a named one, or `folder:PATH` for an image folder.
pub fn dataset() -> DatasetParser {
    DatasetParser
}

/// A named dataset that `bulwark data fetch` can obtain.
pub fn named_dataset() -> PossibleValuesParser {
    PossibleValuesParser::new(DATASETS)
}

/// [`DATASETS`] or `folder:PATH` (a non-empty path).
#[derive(Debug, Clone, Copy)]
pub struct DatasetParser;

impl TypedValueParser for DatasetParser {
    type Value = String;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<String, clap::Error> {
        match value.to_str().and_then(|v| v.strip_prefix(FOLDER_PREFIX)) {
            Some("") => Err(clap::Error::raw(
                clap::error::ErrorKind::InvalidValue,
                format!("`{FOLDER_PREFIX}` needs a path: {FOLDER_PREFIX}PATH\n"),
            )
            .with_cmd(cmd)),
            Some(path) => Ok(format!("{FOLDER_PREFIX}{path}")),
            None => named_dataset().parse_ref(cmd, arg, value),
        }
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        let folder = PossibleValue::new("folder:PATH")
            .help("an image folder: PATH/train/<class>/*.png|jpg and PATH/test/<class>/...");
        Some(Box::new(
            DATASETS
                .iter()
                .map(|d| PossibleValue::new(*d))
                .chain([folder]),
        ))
    }
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
