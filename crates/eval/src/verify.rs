//! Verified (certified) robust accuracy by interval bound propagation over a dataset.

use bulwark_attack_core::{Bounds, Interval, Network, verified};
use bulwark_data::ImageDataset;
use burn::tensor::Device;

use crate::Verified;

/// Which images of `data` interval bound propagation proves robust at L-inf radius `eps`
/// (inputs kept in `bounds`): every input in the box gets the label's class. `None` when the
/// network does not bound itself ([`Network::margin_bounds`]).
///
/// ```
/// use bulwark_attack_core::Bounds;
/// use bulwark_data::{DatasetKind, Split, load_split};
/// use bulwark_eval::verify_ibp;
/// use bulwark_models::Model;
/// use burn::tensor::Device;
///
/// # let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/../data/tests/fixtures/mnist");
/// let device = Device::flex();
/// let data = load_split(DatasetKind::Mnist, Split::Test, fixtures.as_ref())?.take(8);
/// let model = Model::init_seeded("small-cnn", &device, 0)?;
/// let proved = verify_ibp(&model, &data, 0.1, Bounds::new(), 8, &device).unwrap();
/// // An untrained network is proved robust nowhere at this radius.
/// assert_eq!(proved, vec![false; 8]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn verify_ibp<N: Network>(
    net: &N,
    data: &ImageDataset,
    eps: f64,
    bounds: Bounds,
    batch_size: usize,
    device: &Device,
) -> Option<Vec<bool>> {
    let net = net.valid();
    let all: Vec<usize> = (0..data.len()).collect();
    let mut out = Vec::with_capacity(data.len());
    for chunk in all.chunks(batch_size.max(1)) {
        let (x, y) = data.batch(chunk, device);
        let margins = net.margin_bounds(Interval::around(x, eps, bounds), y.clone())?;
        let ok: Vec<bool> = verified(margins, y)
            .into_data()
            .convert::<bool>()
            .try_into_vec()
            .expect("a boolean tensor");
        out.extend(ok);
    }
    Some(out)
}

impl Verified {
    /// [`verify_ibp`] as the verified row of an evaluation
    /// ([`RobustEvalOptions::verified`](crate::RobustEvalOptions::verified)), named `IBP`; `None`
    /// when the network does not bound itself.
    ///
    /// ```
    /// use bulwark_attack_core::Bounds;
    /// use bulwark_data::{DatasetKind, Split, load_split};
    /// use bulwark_eval::Verified;
    /// use bulwark_models::Model;
    /// use burn::tensor::Device;
    ///
    /// # let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/../data/tests/fixtures/mnist");
    /// let device = Device::flex();
    /// let data = load_split(DatasetKind::Mnist, Split::Test, fixtures.as_ref())?.take(4);
    /// let model = Model::init_seeded("small-cnn", &device, 0)?;
    /// let row = Verified::ibp(&model, &data, 0.1, Bounds::new(), 4, &device).unwrap();
    /// assert_eq!((row.method.as_str(), row.verified.len()), ("IBP", 4));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn ibp<N: Network>(
        net: &N,
        data: &ImageDataset,
        eps: f64,
        bounds: Bounds,
        batch_size: usize,
        device: &Device,
    ) -> Option<Self> {
        verify_ibp(net, data, eps, bounds, batch_size, device).map(|verified| Verified {
            method: "IBP".into(),
            verified,
        })
    }
}
