//! [`TextCorpus`]: labelled texts before tokenization.

/// Labelled texts: `texts[i]` has class `labels[i]`, named `class_names[labels[i]]`, and is
/// identified by `ids[i]` (for the SpamAssassin corpus `<group>/<id>`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TextCorpus {
    /// Identifier of each text in its source.
    pub ids: Vec<String>,
    /// The texts.
    pub texts: Vec<String>,
    /// One class label per text, below `class_names.len()`.
    pub labels: Vec<u8>,
    /// Class names, by label.
    pub class_names: Vec<String>,
}

impl TextCorpus {
    /// A corpus with these classes and no text.
    pub fn empty(class_names: Vec<String>) -> Self {
        Self {
            class_names,
            ..Self::default()
        }
    }

    /// Appends one text.
    pub fn push(&mut self, id: String, text: String, label: u8) {
        self.ids.push(id);
        self.texts.push(text);
        self.labels.push(label);
    }

    /// Number of texts.
    pub fn len(&self) -> usize {
        self.texts.len()
    }

    /// True when there is no text.
    pub fn is_empty(&self) -> bool {
        self.texts.is_empty()
    }

    /// Number of texts per class (`class_names.len()` entries).
    pub fn label_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.class_names.len()];
        for &l in &self.labels {
            if let Some(c) = counts.get_mut(usize::from(l)) {
                *c += 1;
            }
        }
        counts
    }
}
