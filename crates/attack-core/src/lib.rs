//! Bulwark's adversarial attacks (skeleton).
//!
//! This crate will hold the white-box gradient attacks (FGSM, FGSM with random start, BIM, PGD in
//! L-inf/L2/L1, MI-FGSM, Carlini-Wagner L2, DeepFool) and the evaluation-grade attacks (APGD,
//! Square), all running the model in inference mode on a `&Device`, with projection around the
//! clean input after every step.
//!
//! Nothing is implemented yet: the attack-core issue owns this crate's content. The crate exists
//! so that the workspace layout, dependencies and CI are in place. The input-gradient path the
//! attacks will use (a `valid()` model with an autodiff input) is already exercised by
//! `bulwark-trainer`'s cross-backend test.
