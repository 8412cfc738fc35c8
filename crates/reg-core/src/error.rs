//! The one error type of this crate.

/// Why a regularizer refused to run.
#[derive(Debug, thiserror::Error)]
pub enum RegError {
    /// A parameter selection matched no parameter of the model: a penalty on nothing would be a
    /// silent zero.
    #[error(
        "the parameter selection {selection} matches no parameter of the model; its parameters are: {available}"
    )]
    EmptySelection {
        /// The selection, described.
        selection: String,
        /// The model's parameters with their kinds.
        available: String,
    },
    /// A numeric setting is out of range.
    #[error("invalid setting `{name}` = {value}: {reason}")]
    InvalidSetting {
        /// The setting.
        name: &'static str,
        /// Its value, formatted.
        value: String,
        /// The valid range.
        reason: &'static str,
    },
    /// Inputs whose sizes disagree.
    #[error("{0}")]
    Shape(String),
}

pub(crate) fn invalid(
    name: &'static str,
    value: impl std::fmt::Display,
    reason: &'static str,
) -> RegError {
    RegError::InvalidSetting {
        name,
        value: value.to_string(),
        reason,
    }
}
