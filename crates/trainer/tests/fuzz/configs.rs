//! The configuration parsers on damaged files: the training configurations of image and text
//! runs (TOML, with the regularizers' file form inside them) and the attack configuration (TOML or JSON).

use std::path::Path;

use bulwark_attack_core::AttackConfig;
use bulwark_trainer::text::TextTrainConfig;
use bulwark_trainer::{TrainConfig, TrainError};
use proptest::prelude::*;

use crate::alloc::peak;
use crate::mutate::{apply, config, mutation};

/// Every recipe in `configs/`.
fn recipes() -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect();
    v.sort();
    v
}

/// Parses a recipe as its kind (`spam-*.toml` are text runs, `bulwark text train`); returns the
/// configuration's own TOML.
fn parse(name: &str, src: &str) -> Result<String, TrainError> {
    let path = Path::new(name);
    let text_run = path
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with("spam-"));
    if text_run {
        let cfg = TextTrainConfig::from_toml_str(src, path)?;
        cfg.validate()?;
        Ok(cfg.to_toml())
    } else {
        let cfg = TrainConfig::from_toml_str(src, path)?;
        cfg.validate()?;
        Ok(cfg.to_toml())
    }
}

/// Attack configurations as users write them for `bulwark attack --config`.
const ATTACKS: [&str; 6] = [
    "attack = \"pgd\"\nsteps = 40\n[threat]\nnorm = \"linf\"\neps = 0.3\n[options]\nrestarts = 2\n",
    "attack = \"apgd\"\nsteps = 100\n[threat]\nnorm = \"l2\"\neps = 1.5\n",
    "attack = \"square\"\nqueries = 500\n[threat]\nnorm = \"linf\"\neps = 0.1\n",
    "attack = \"cw-l2\"\nsteps = 50\n",
    "attack = \"deepfool\"\nnorm = \"l2\"\nsteps = 20\n",
    "attack = \"fgsm\"\n[threat]\nnorm = \"l1\"\neps = 10.0\n",
];

/// Text parsers see what a damaged file decodes to (invalid UTF-8 replaced), so that the damage
/// reaches the parser rather than stopping at the UTF-8 check.
fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A parser may allocate a constant plus a multiple of the text: tables, strings and the
/// configuration with its defaults.
fn bound(len: usize) -> usize {
    (1 << 20) + 64 * len
}

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn training_configuration(which in any::<prop::sample::Index>(), m in mutation()) {
        let recipes = recipes();
        let (name, valid) = &recipes[which.index(recipes.len())];
        let src = text(&apply(valid, &m));
        let (result, used) = peak(|| parse(name, &src));
        match result {
            // A configuration that parses is valid and survives its own round trip.
            Ok(toml) => {
                let again = parse(name, &toml).unwrap();
                prop_assert_eq!(again, toml);
            }
            Err(e) => prop_assert!(e.to_string().starts_with(name.as_str()), "{}", e),
        }
        prop_assert!(used <= bound(src.len()), "{} bytes for {} bytes of text", used, src.len());
    }

    #[test]
    fn attack_configuration(which in 0usize..ATTACKS.len(), json in any::<bool>(), m in mutation()) {
        let valid = if json {
            let v: toml::Value = toml::from_str(ATTACKS[which]).unwrap();
            serde_json::to_vec(&v).unwrap()
        } else {
            ATTACKS[which].as_bytes().to_vec()
        };
        let src = text(&apply(&valid, &m));
        let (result, used) = peak(|| {
            let value: Result<serde_json::Value, String> = if json {
                serde_json::from_str(&src).map_err(|e| e.to_string())
            } else {
                toml::from_str(&src).map_err(|e| e.to_string())
            };
            value.and_then(|v| {
                let config = AttackConfig::from_partial(v).map_err(|e| e.to_string())?;
                config.init().map(|_| config).map_err(|e| e.to_string())
            })
        });
        if let Err(e) = &result {
            prop_assert!(!e.is_empty());
        }
        prop_assert!(used <= bound(src.len()), "{} bytes for {} bytes of text", used, src.len());
    }
}

#[test]
fn the_seeds_parse() {
    for (name, bytes) in recipes() {
        parse(&name, &text(&bytes)).unwrap();
    }
    for a in ATTACKS {
        let c = AttackConfig::from_partial(toml::from_str(a).unwrap()).unwrap();
        c.init().unwrap();
    }
}
