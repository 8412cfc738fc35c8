//! Choosing the parameters a regularizer covers: by dotted path pattern (`fc1.weight`,
//! `conv*.weight`, `layer1.*`) and by kind (weights, biases, normalization-layer parameters).
//!
//! Paths are the field names from the model's root, joined by dots, with enum variants (the zoo's
//! `Model` wrapper) left out: `fc1.weight`, `layer1.0.conv1.weight`. A pattern matches the whole
//! path; `*` matches any run of characters (dots included), `?` one character. Kinds come from the
//! parameter's name and its layer: `bias` is a bias; every parameter of a layer whose type name
//! contains `Norm` (BatchNorm's `gamma`/`beta`, LayerNorm's ...) is a norm parameter; BatchNorm's
//! running statistics are buffers and never selected; everything else is a weight.
//!
//! The default selection is every weight: biases and normalization layers are excluded, as
//! Keras users set per layer and as AdamW setups usually do. A selection that matches nothing is
//! an error, not a silent zero.

use std::fmt;

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::error::RegError;

/// What a parameter is, as far as regularizers care.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ParamKind {
    /// Weights of linear, convolutional and other layers.
    Weight,
    /// Biases.
    Bias,
    /// Parameters of normalization layers (BatchNorm's `gamma` and `beta`, ...).
    Norm,
    /// Non-trainable state stored as parameters (BatchNorm's running mean and variance).
    Buffer,
}

impl fmt::Display for ParamKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ParamKind::Weight => "weight",
            ParamKind::Bias => "bias",
            ParamKind::Norm => "norm",
            ParamKind::Buffer => "buffer",
        })
    }
}

/// The layer type a parameter belongs to, for penalties whose groups depend on the layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerKind {
    /// burn's `Linear`: weight `[inputs, outputs]` (transposed with respect to PyTorch).
    Linear,
    /// A convolution: weight `[out_channels, in_channels, ...kernel]` (transposed convolutions,
    /// whose weight is `[in, out/groups, ...]`, count as `Other`).
    Conv,
    /// Anything else.
    Other,
}

/// One parameter of a model, as the selection sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamInfo {
    /// Dotted path from the model's root, enum variants left out.
    pub path: String,
    /// Its kind.
    pub kind: ParamKind,
    /// Its layer's type.
    pub layer: LayerKind,
    /// Its shape.
    pub shape: Vec<usize>,
}

/// Which parameters a regularizer covers. In configuration files (serde), every field is
/// optional and defaults to [`ParamSelection::weights`]'s: `{ include = ["conv*.weight"] }`
/// keeps `kinds = ["weight"]`; unknown keys are errors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ParamSelection {
    /// Path patterns a parameter must match (one of them).
    pub include: Vec<String>,
    /// Path patterns that exclude a parameter.
    pub exclude: Vec<String>,
    /// Kinds a parameter must have.
    pub kinds: Vec<ParamKind>,
}

impl Default for ParamSelection {
    fn default() -> Self {
        Self::weights()
    }
}

impl ParamSelection {
    /// Every weight (no biases, no normalization-layer parameters).
    pub fn weights() -> Self {
        Self {
            include: vec!["*".into()],
            exclude: Vec::new(),
            kinds: vec![ParamKind::Weight],
        }
    }

    /// Every trainable parameter (weights, biases and normalization parameters).
    pub fn all() -> Self {
        Self {
            include: vec!["*".into()],
            exclude: Vec::new(),
            kinds: vec![ParamKind::Weight, ParamKind::Bias, ParamKind::Norm],
        }
    }

    /// Parameters whose path matches one of `patterns`, of any trainable kind (a pattern that
    /// names a bias selects it).
    pub fn paths<S: Into<String>>(patterns: impl IntoIterator<Item = S>) -> Self {
        Self {
            include: patterns.into_iter().map(Into::into).collect(),
            exclude: Vec::new(),
            kinds: vec![ParamKind::Weight, ParamKind::Bias, ParamKind::Norm],
        }
    }

    /// Also excludes parameters matching `pattern`.
    pub fn without(mut self, pattern: impl Into<String>) -> Self {
        self.exclude.push(pattern.into());
        self
    }

    /// Restricts the kinds.
    pub fn with_kinds(mut self, kinds: impl IntoIterator<Item = ParamKind>) -> Self {
        self.kinds = kinds.into_iter().collect();
        self
    }

    /// Does this selection cover `info`? Buffers never are.
    pub fn covers(&self, info: &ParamInfo) -> bool {
        info.kind != ParamKind::Buffer
            && self.kinds.contains(&info.kind)
            && self.include.iter().any(|p| glob(p, &info.path))
            && !self.exclude.iter().any(|p| glob(p, &info.path))
    }

    /// The parameters of `model` this selection covers, in visiting order; an error naming the
    /// model's parameters when there are none.
    pub fn resolve<M: Module>(&self, model: &M) -> Result<Vec<ParamInfo>, RegError> {
        let all = parameters(model);
        let chosen: Vec<ParamInfo> = all.iter().filter(|p| self.covers(p)).cloned().collect();
        if chosen.is_empty() {
            return Err(RegError::EmptySelection {
                selection: self.to_string(),
                available: all
                    .iter()
                    .map(|p| format!("{} ({})", p.path, p.kind))
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        Ok(chosen)
    }
}

impl fmt::Display for ParamSelection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kinds: Vec<String> = self.kinds.iter().map(ToString::to_string).collect();
        write!(f, "{{paths {:?}", self.include)?;
        if !self.exclude.is_empty() {
            write!(f, " without {:?}", self.exclude)?;
        }
        write!(f, ", kinds {}}}", kinds.join("|"))
    }
}

/// Whole-string glob match: `*` any run of characters, `?` any one character.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    // Classic two-pointer wildcard matching with backtracking to the last star.
    let (mut i, mut j, mut star, mut mark) = (0usize, 0usize, None::<usize>, 0usize);
    while j < t.len() {
        if i < p.len() && (p[i] == '?' || p[i] == t[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some(i);
            mark = j;
            i += 1;
        } else if let Some(s) = star {
            i = s + 1;
            mark += 1;
            j = mark;
        } else {
            return false;
        }
    }
    while i < p.len() && p[i] == '*' {
        i += 1;
    }
    i == p.len()
}

/// Every float parameter of `model` with its path, kind, layer and shape.
pub fn parameters<M: Module>(model: &M) -> Vec<ParamInfo> {
    let mut v = Collect::default();
    model.visit(&mut v);
    v.out
}

#[derive(Default)]
struct Collect {
    stack: PathStack,
    out: Vec<ParamInfo>,
}

/// Where a `ModuleVisitor` or `ModuleMapper` is in the model: the names and container types from
/// `enter_module` / `exit_module` (burn's derive calls them for parameter fields too).
#[derive(Debug, Default)]
pub(crate) struct PathStack(Vec<(String, String)>);

impl PathStack {
    pub(crate) fn enter(&mut self, name: &str, container_type: &str) {
        self.0.push((name.into(), container_type.into()));
    }

    pub(crate) fn exit(&mut self) {
        self.0.pop();
    }

    /// Path, kind and layer of the parameter being visited (its shape left empty).
    pub(crate) fn param(&self) -> ParamInfo {
        let (path, kind, layer) = describe(&self.0);
        ParamInfo {
            path,
            kind,
            layer,
            shape: Vec::new(),
        }
    }
}

/// Puts back the autodiff tracking and `require_grad` flag of `like` (a parameter's tensor) on
/// `t`, computed from its plain value, as burn's optimizer does after a step.
pub(crate) fn restore_tracking<const D: usize>(t: Tensor<D>, like: (bool, bool)) -> Tensor<D> {
    let (autodiff, require_grad) = like;
    match (autodiff, require_grad) {
        (true, true) => t.autodiff().require_grad(),
        (true, false) => t.autodiff(),
        _ => t,
    }
}

/// Path, kind and layer of the parameter at the top of a visitor's stack.
fn describe(stack: &[(String, String)]) -> (String, ParamKind, LayerKind) {
    let path = stack
        .iter()
        .filter(|(_, container)| !container.starts_with("Enum"))
        .map(|(name, _)| name.as_str())
        .collect::<Vec<_>>()
        .join(".");
    let (name, layer) = stack
        .last()
        .map(|(n, c)| (n.as_str(), c.as_str()))
        .unwrap_or(("", ""));
    let kind = if name == "running_mean" || name == "running_var" {
        ParamKind::Buffer
    } else if layer.contains("Norm") {
        ParamKind::Norm
    } else if name == "bias" {
        ParamKind::Bias
    } else {
        ParamKind::Weight
    };
    let layer_kind = if layer.ends_with(":Linear") {
        LayerKind::Linear
    } else if layer.contains(":Conv") && !layer.contains(":ConvTranspose") {
        LayerKind::Conv
    } else {
        LayerKind::Other
    };
    (path, kind, layer_kind)
}

impl ModuleVisitor for Collect {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.stack.enter(name, container_type);
    }

    fn exit_module(&mut self, _: &str, _: &str) {
        self.stack.exit();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.out.push(ParamInfo {
            shape: param.lazy_shape().to_vec(),
            ..self.stack.param()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn globs_match_whole_dotted_paths() {
        assert!(glob("fc1.weight", "fc1.weight"));
        assert!(!glob("fc1.weight", "fc1.weight2"));
        assert!(!glob("fc1.weight", "net.fc1.weight"));
        assert!(glob("conv*.weight", "conv1.weight"));
        assert!(glob("conv*.weight", "conv12.weight"));
        assert!(!glob("conv*.weight", "conv1.bias"));
        assert!(glob("*.weight", "layer1.0.conv1.weight"));
        assert!(glob("layer?.*", "layer3.1.bn2.gamma"));
        assert!(glob("*", ""));
        assert!(!glob("?", ""));
        assert!(glob("a*b*c", "a.x.b.y.c"));
        assert!(!glob("a*b*c", "a.x.b.y.d"));
    }
}
