//! The 2D convolution and max pooling of the backend under test against their definitions,
//! computed directly on the host: convolution forward, input gradient, weight gradient and bias
//! gradient (summed in f64), max pooling values and input gradient. The flex backend runs patched
//! kernels for these (vendor/burn-flex); the convolution geometries cover stride, padding,
//! dilation, groups, non-square kernels, a 1x1 kernel, short and long output rows, and a batch
//! that splits into uneven chunks; max pooling covers ties, NaN and infinities. `mask_where`
//! (patched to select without branches) is checked bit for bit, and `sign` on special values.
//!
//! Every convolution case runs on flex's three f32 paths: the direct AVX-512 kernels with the
//! Winograd F(2x2, 3x3) path (3x3 kernels of stride and dilation 1 with 32 or more channels in and
//! out, forward and input gradient), the direct kernels alone (where the CPU has AVX-512F and the
//! geometry suits them: one group, 16 or more output channels, a reduction of 64 or more; the
//! input gradient at stride 1 with 16 or more input channels; the weight gradient at stride 1
//! with 8 or more input and 16 or more output channels and maps of 64 or more pixels), and
//! batch-chunked im2col + gemm.
//! The cases named `direct_*` have geometries the direct kernels take, `winograd_*` ones the
//! Winograd path takes.

use burn::tensor::module::{conv2d, max_pool2d};
use burn::tensor::ops::{ConvOptions, MaxPoolOptions};
use burn::tensor::{Device, Tensor, TensorData};
use std::sync::Mutex;

/// The direct-kernel switch is process-wide: convolution checks take turns.
static PATHS: Mutex<()> = Mutex::new(());

#[derive(Debug, Clone, Copy)]
struct Case {
    b: usize,
    cin: usize,
    h: usize,
    w: usize,
    cout: usize,
    k: [usize; 2],
    stride: [usize; 2],
    pad: [usize; 2],
    dilation: [usize; 2],
    groups: usize,
}

impl Case {
    fn out(&self) -> [usize; 2] {
        let o = |i: usize, size: usize| {
            (size + 2 * self.pad[i] - self.dilation[i] * (self.k[i] - 1) - 1) / self.stride[i] + 1
        };
        [o(0, self.h), o(1, self.w)]
    }
}

/// Deterministic values in [-1, 1) (a linear congruential sequence).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f64 / (1u64 << 24) as f64 * 2.0 - 1.0) as f32
        })
        .collect()
}

struct Reference {
    out: Vec<f64>,
    dx: Vec<f64>,
    dw: Vec<f64>,
    db: Vec<f64>,
}

/// Forward output, and the gradients of `sum(out * r)`, by the definition.
fn reference(c: &Case, x: &[f32], w: &[f32], bias: &[f32], r: &[f32]) -> Reference {
    let [ho, wo] = c.out();
    let (cpg, cog) = (c.cin / c.groups, c.cout / c.groups);
    let mut out = vec![0f64; c.b * c.cout * ho * wo];
    let mut dx = vec![0f64; x.len()];
    let mut dw = vec![0f64; w.len()];
    let mut db = vec![0f64; c.cout];
    for b in 0..c.b {
        for co in 0..c.cout {
            let g = co / cog;
            for oh in 0..ho {
                for ow in 0..wo {
                    let o = ((b * c.cout + co) * ho + oh) * wo + ow;
                    let mut acc = f64::from(bias[co]);
                    let ro = f64::from(r[o]);
                    db[co] += ro;
                    for ci in 0..cpg {
                        let cin = g * cpg + ci;
                        for ky in 0..c.k[0] {
                            for kx in 0..c.k[1] {
                                let ih = (oh * c.stride[0] + ky * c.dilation[0]) as isize
                                    - c.pad[0] as isize;
                                let iw = (ow * c.stride[1] + kx * c.dilation[1]) as isize
                                    - c.pad[1] as isize;
                                if ih < 0 || iw < 0 || ih >= c.h as isize || iw >= c.w as isize {
                                    continue;
                                }
                                let xi =
                                    ((b * c.cin + cin) * c.h + ih as usize) * c.w + iw as usize;
                                let wi = ((co * cpg + ci) * c.k[0] + ky) * c.k[1] + kx;
                                acc += f64::from(x[xi]) * f64::from(w[wi]);
                                dx[xi] += ro * f64::from(w[wi]);
                                dw[wi] += ro * f64::from(x[xi]);
                            }
                        }
                    }
                    out[o] = acc;
                }
            }
        }
    }
    Reference { out, dx, dw, db }
}

fn assert_close(what: &str, c: &Case, got: &[f32], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what} length for {c:?}");
    let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (f64::from(g) - w).abs() <= 1e-4 * scale,
            "{what}[{i}] = {g}, expected {w} for {c:?}"
        );
    }
}

/// Checks a case on every convolution path (see the module documentation): the direct kernels with
/// and without the Winograd path, then im2col + gemm.
fn check(c: Case) {
    let _turn = PATHS.lock().unwrap_or_else(|e| e.into_inner());
    for (direct, winograd, name) in [
        (true, true, "direct + Winograd"),
        (true, false, "direct"),
        (false, false, "gemm"),
    ] {
        burn_flex::set_conv2d_direct(direct);
        burn_flex::set_conv2d_winograd(winograd);
        check_path(c, name);
    }
    burn_flex::set_conv2d_direct(true);
    burn_flex::set_conv2d_winograd(true);
}

/// [`check`], and the two paths' output and gradients equal bit for bit: for geometries where the
/// switch changes only how the stride phases are split, merged and summed (the AVX-512 routines
/// against the generic ones), not which kernel multiplies.
fn check_bit_for_bit(c: Case) {
    let _turn = PATHS.lock().unwrap_or_else(|e| e.into_inner());
    let mut paths = Vec::new();
    // Without the Winograd path, which multiplies differently (`check` covers it).
    burn_flex::set_conv2d_winograd(false);
    for (direct, name) in [(true, "direct"), (false, "gemm")] {
        burn_flex::set_conv2d_direct(direct);
        paths.push(check_path(c, name));
    }
    burn_flex::set_conv2d_direct(true);
    burn_flex::set_conv2d_winograd(true);
    let names = [
        "output",
        "input gradient",
        "weight gradient",
        "bias gradient",
    ];
    for ((name, on), off) in names.iter().zip(&paths[0]).zip(&paths[1]) {
        let differ = on
            .iter()
            .zip(off)
            .position(|(a, b)| a.to_bits() != b.to_bits());
        assert!(
            differ.is_none(),
            "{name} for {c:?}: element {} is {} on the direct path and {} on the gemm path",
            differ.unwrap_or_default(),
            on[differ.unwrap_or_default()],
            off[differ.unwrap_or_default()]
        );
    }
}

/// Checks one path against the definition and returns its output and gradients (output, input,
/// weight, bias) as read back.
fn check_path(c: Case, path: &str) -> [Vec<f32>; 4] {
    let what = |name: &str| format!("{name} ({path} path)");
    let device = Device::flex();
    let [ho, wo] = c.out();
    let x = values(c.b * c.cin * c.h * c.w, 1);
    let w = values(c.cout * (c.cin / c.groups) * c.k[0] * c.k[1], 2);
    let bias = values(c.cout, 3);
    let r = values(c.b * c.cout * ho * wo, 4);
    let want = reference(&c, &x, &w, &bias, &r);

    let t4 = |v: &[f32], dims: [usize; 4]| {
        Tensor::<4>::from_data(TensorData::new(v.to_vec(), dims), &device)
            .autodiff()
            .require_grad()
    };
    let xa = t4(&x, [c.b, c.cin, c.h, c.w]);
    let wa = t4(&w, [c.cout, c.cin / c.groups, c.k[0], c.k[1]]);
    let ba = Tensor::<1>::from_data(TensorData::new(bias.clone(), [c.cout]), &device)
        .autodiff()
        .require_grad();
    let options = ConvOptions::new(c.stride, c.pad, c.dilation, c.groups);
    let out = conv2d(xa.clone(), wa.clone(), Some(ba.clone()), options);
    assert_eq!(out.dims(), [c.b, c.cout, ho, wo], "output shape for {c:?}");
    let weights =
        Tensor::<4>::from_data(TensorData::new(r, [c.b, c.cout, ho, wo]), &device).autodiff();
    let grads = (out.clone() * weights).sum().backward();
    let host = |t: Tensor<4>| t.into_data().try_to_vec::<f32>().unwrap();

    assert_close(&what("output"), &c, &host(out.clone().inner()), &want.out);
    let dx = host(xa.grad(&grads).expect("input gradient"));
    assert_close(&what("input gradient"), &c, &dx, &want.dx);
    let dw = host(wa.grad(&grads).expect("weight gradient"));
    assert_close(&what("weight gradient"), &c, &dw, &want.dw);
    let db = ba.grad(&grads).expect("bias gradient");
    let db = db.into_data().try_to_vec::<f32>().unwrap();
    assert_close(&what("bias gradient"), &c, &db, &want.db);
    [host(out.inner()), dx, dw, db]
}

const BASE: Case = Case {
    b: 3,
    cin: 2,
    h: 7,
    w: 6,
    cout: 4,
    k: [3, 2],
    stride: [1, 1],
    pad: [1, 0],
    dilation: [1, 1],
    groups: 1,
};

#[test]
fn stride_one_with_padding_and_a_non_square_kernel() {
    check(BASE);
}

#[test]
fn stride_two_like_the_small_cnn() {
    // small-cnn's first layer (1 -> 16, 4x4, stride 2, padding 1) at a reduced size.
    check(Case {
        b: 5,
        cin: 1,
        h: 10,
        w: 10,
        cout: 3,
        k: [4, 4],
        stride: [2, 2],
        pad: [1, 1],
        ..BASE
    });
}

#[test]
fn long_rows_with_stride_one_like_the_madry_cnn() {
    // Output rows of 17 or more pixels: im2col copies them row by row (rows of 4 to 16
    // pixels move as fixed 8- or 16-element blocks that spill into the next row).
    check(Case {
        h: 6,
        w: 21,
        cout: 3,
        k: [5, 5],
        pad: [2, 2],
        ..BASE
    });
    check(Case {
        h: 5,
        w: 20,
        k: [3, 3],
        stride: [2, 1],
        pad: [1, 1],
        dilation: [1, 2],
        ..BASE
    });
}

#[test]
fn dilation_and_unequal_strides() {
    check(Case {
        h: 9,
        w: 8,
        k: [3, 3],
        stride: [2, 1],
        pad: [2, 1],
        dilation: [2, 3],
        ..BASE
    });
}

#[test]
fn two_groups() {
    check(Case {
        cin: 4,
        cout: 6,
        groups: 2,
        ..BASE
    });
}

#[test]
fn a_pointwise_kernel_with_stride() {
    check(Case {
        k: [1, 1],
        stride: [2, 2],
        pad: [0, 0],
        ..BASE
    });
}

#[test]
fn padding_wider_than_the_kernel_reach() {
    check(Case {
        h: 3,
        w: 2,
        k: [2, 2],
        pad: [3, 2],
        stride: [3, 2],
        ..BASE
    });
}

#[test]
fn a_batch_that_splits_into_uneven_chunks() {
    // Many samples of a 9x9 map: the kernels process the batch in chunks of several samples,
    // the last one shorter.
    check(Case {
        b: 37,
        cin: 3,
        h: 9,
        w: 9,
        cout: 5,
        k: [5, 5],
        pad: [2, 2],
        ..BASE
    });
}

#[test]
fn direct_like_the_madry_cnn_with_a_partial_channel_block() {
    // 5x5, padding 2, stride 1; 40 output channels run as a 32- and a 16-channel block (8 of
    // them padding); rows of 9 pixels split into panels of 5 and 4. The input gradient has 18
    // output channels (one block, 14 of them padding) and a reduction of 40·25.
    check(Case {
        b: 3,
        cin: 18,
        h: 9,
        w: 9,
        cout: 40,
        k: [5, 5],
        pad: [2, 2],
        ..BASE
    });
}

#[test]
fn direct_at_cifar_map_sizes_with_row_pairs() {
    // PreAct-ResNet-18's stages at reduced channel counts: 3x3, padding 1 on 8x8, 4x4 and odd
    // maps. Rows of at most 4 pixels run two at a time (a 4x4 map as two tiles of 2 rows; 5x3
    // and 3x2 maps end with a single row); rows of 8 as one 8-pixel panel. 48 output channels run
    // a 32- and a 16-channel block; the stride-2 case reads stride phases with rows of 4; the
    // input gradients (stride 1, 48 input channels) run the kernel with one 32-channel block for
    // 20 channels, 12 of them padding.
    for (h, w, stride) in [
        (8, 8, 1),
        (4, 4, 1),
        (5, 3, 1),
        (3, 2, 1),
        (8, 8, 2),
        (16, 16, 1),
    ] {
        check(Case {
            b: 3,
            cin: 20,
            h,
            w,
            cout: 48,
            k: [3, 3],
            stride: [stride, stride],
            pad: [1, 1],
            ..BASE
        });
    }
    // Many samples of an 8x8 map (8 tiles each): the direct kernel runs every reduction block
    // over groups of 4 samples' tiles, and a chunk of 6 samples (44 samples on 2 threads) or 11
    // (1 thread) ends with a shorter group.
    check(Case {
        b: 44,
        cin: 20,
        h: 8,
        w: 8,
        cout: 48,
        k: [3, 3],
        pad: [1, 1],
        ..BASE
    });
    // The downsampling shortcuts: 1x1, stride 2, no padding, through the direct kernel (a
    // reduction of 64) and through im2col + gemm (20), on even and odd maps.
    for (cin, h) in [(64, 8), (64, 7), (20, 9)] {
        check(Case {
            b: 2,
            cin,
            h,
            w: h,
            cout: 48,
            k: [1, 1],
            stride: [2, 2],
            pad: [0, 0],
            ..BASE
        });
    }
}

#[test]
fn direct_strided_like_the_small_cnn() {
    // small-cnn's second layer (16 -> 32, 4x4, stride 2, padding 1) at full size: the forward
    // reads the stride phases; the input gradient (stride 2) takes the gemm path.
    check(Case {
        b: 2,
        cin: 16,
        h: 14,
        w: 14,
        cout: 32,
        k: [4, 4],
        stride: [2, 2],
        pad: [1, 1],
        ..BASE
    });
}

#[test]
fn column_stride_two_over_widths_paddings_and_dilations() {
    // A column stride of 2 splits each input row into even and odd phase rows; with the direct
    // kernels on, rows whose phases hold at most 16 pixels and whose padded input ends within
    // 32 lanes take the AVX-512 split and merge (masked loads and stores, even/odd lane
    // permutations), and col2im sums phase rows in registers. Widths and paddings on both sides
    // of the phase-row limit (16 and 17), padding plus width of 32 and, with phase rows of 16,
    // 33 (w 33 unpadded with an even kernel: its last column is read by no window and must
    // still get a zero gradient), odd and even sizes, dilation, row strides 1, 2 and 3, and
    // kernels that read the last padded column or stop short of it. With 3 output channels
    // neither path runs a direct kernel, so the switch changes only the phase routines and the
    // results must be the same bit for bit.
    let mut cases = Vec::new();
    for (w, pad, kw, dil) in [
        (1, 0, 1, 1),
        (2, 1, 2, 1),
        (5, 0, 3, 1),
        (7, 2, 3, 1),
        (8, 3, 4, 1),
        (9, 1, 4, 1),
        (13, 1, 3, 2),
        (14, 1, 4, 1),
        (15, 0, 5, 1),
        (28, 1, 4, 1),
        (29, 3, 2, 1),
        (30, 1, 4, 1),
        (31, 1, 4, 1),
        (30, 2, 5, 1),
        (32, 1, 4, 1),
        (33, 0, 3, 1),
        (33, 0, 2, 1),
        (33, 0, 4, 1),
        (31, 2, 3, 2),
    ] {
        for stride_h in [1, 2, 3] {
            cases.push(Case {
                b: 2,
                cin: 2,
                h: 5,
                w,
                cout: 3,
                k: [2, kw],
                stride: [stride_h, 2],
                pad: [1, pad],
                dilation: [1, dil],
                ..BASE
            });
        }
    }
    for c in cases {
        check_bit_for_bit(c);
    }
    // Through the direct kernel's forward (a reduction of 64 or more) at small-cnn's first-layer
    // width and an odd one.
    for w in [28, 27] {
        check(Case {
            b: 2,
            cin: 4,
            h: 6,
            w,
            cout: 16,
            k: [4, 4],
            stride: [2, 2],
            pad: [1, 1],
            ..BASE
        });
    }
}

#[test]
fn direct_dilation_unequal_padding_and_short_rows() {
    // Dilation 2 with padding below its reach (the input gradient pads by 3 and 2); a non-square
    // kernel; output rows of 3 to 9 pixels and of 17 (one panel, or two or three of near-equal
    // widths).
    for w in [5, 6, 7, 8, 9, 10, 11, 19] {
        check(Case {
            b: 2,
            cin: 16,
            h: 6,
            w,
            cout: 17,
            k: [3, 2],
            pad: [1, 0],
            dilation: [2, 2],
            ..BASE
        });
    }
}

#[test]
fn direct_unequal_strides_with_dilation() {
    check(Case {
        b: 2,
        cin: 8,
        h: 9,
        w: 12,
        cout: 24,
        k: [3, 3],
        stride: [2, 1],
        pad: [2, 1],
        dilation: [2, 3],
        ..BASE
    });
}

#[test]
fn direct_forward_with_unequal_strides() {
    // Strides 3 and 2 on a 5x4 kernel: the forward reads six stride phases of the input.
    check(Case {
        b: 2,
        cin: 16,
        h: 11,
        w: 13,
        cout: 40,
        k: [5, 4],
        stride: [3, 2],
        pad: [2, 1],
        ..BASE
    });
}

#[test]
fn winograd_at_the_resnet_stages() {
    // PreAct-ResNet-18's stride-1 3x3 convolutions at their real channel counts and map sizes
    // (2 samples), then WideResNet-28-10's and -34-10's (1 sample): one to five reduction blocks
    // of the transformed weights (at most 128 channels each), two to twenty output channel
    // blocks; the input gradients are the same geometries.
    for (b, ch, side) in [
        (2, 64, 32),
        (2, 128, 16),
        (2, 256, 8),
        (2, 512, 4),
        (1, 160, 32),
        (1, 320, 16),
        (1, 640, 8),
    ] {
        check(Case {
            b,
            cin: ch,
            h: side,
            w: side,
            cout: ch,
            k: [3, 3],
            pad: [1, 1],
            ..BASE
        });
    }
}

#[test]
fn winograd_at_odd_sizes_paddings_and_channel_counts() {
    let case = Case {
        b: 3,
        cin: 33,
        h: 7,
        w: 5,
        cout: 40,
        k: [3, 3],
        pad: [1, 1],
        ..BASE
    };
    // Odd maps (the last tile row and column are half outside), 40 output channels (a 32- and a
    // 16-channel block, 8 of them padding; 33 for the input gradient), 33 input channels.
    check(case);
    // No padding (small-cnn's 32-channel layers: 12x12 to 10x10), and padding 2 (the output is
    // larger than the input).
    check(Case {
        cin: 32,
        h: 12,
        w: 12,
        cout: 64,
        pad: [0, 0],
        ..case
    });
    check(Case {
        h: 5,
        w: 6,
        pad: [2, 2],
        ..case
    });
    // Unequal padding, 1x1 and 2x1 maps, three channel blocks (70 = 32 + 32 + 16, 10 of them
    // padding), a reduction of 160 in two blocks of 80.
    check(Case {
        h: 6,
        w: 9,
        pad: [2, 1],
        ..case
    });
    check(Case {
        h: 1,
        w: 1,
        cout: 70,
        ..case
    });
    check(Case {
        b: 2,
        cin: 160,
        h: 2,
        w: 1,
        cout: 32,
        ..case
    });
    // Padding 3, wider than the kernel's reach: the forward on Winograd, the input gradient
    // (whose transposed problem would need padding -1) on the direct kernel.
    check(Case {
        h: 5,
        w: 4,
        pad: [3, 3],
        ..case
    });
}

#[test]
fn an_empty_batch_gives_zero_weight_gradients_on_every_path() {
    // A geometry the direct weight gradient takes (stride 1, 9 input and 16 output channels,
    // 81 pixels), with no samples: an empty output and zero gradients, as from im2col + gemm.
    check(Case {
        b: 0,
        cin: 9,
        h: 9,
        w: 9,
        cout: 16,
        k: [3, 3],
        pad: [1, 1],
        ..BASE
    });
    // The same at Winograd's channel counts.
    check(Case {
        b: 0,
        cin: 32,
        h: 8,
        w: 8,
        cout: 32,
        k: [3, 3],
        pad: [1, 1],
        ..BASE
    });
}

#[test]
fn winograd_over_chunks_and_passes() {
    // 11x9 maps hold 30 tiles per sample: chunks of 9 samples (270 tiles, the products in passes
    // of 128, 128 and 14 tiles, the last pass ending with a 6-tile kernel call) and a last chunk
    // of one sample.
    check(Case {
        b: 10,
        cin: 32,
        h: 11,
        w: 9,
        cout: 32,
        k: [3, 3],
        pad: [1, 1],
        ..BASE
    });
    // 4x4 maps (4 tiles per sample): a chunk of 64 samples and one of 6.
    check(Case {
        b: 70,
        cin: 32,
        h: 4,
        w: 4,
        cout: 48,
        k: [3, 3],
        pad: [1, 1],
        ..BASE
    });
}

#[test]
fn direct_weight_gradient_over_chunks_runs_and_pixel_blocks() {
    // With the direct kernels on, the weight gradient of a stride-1 convolution with maps of 64
    // pixels or more runs on them: 81 pixels per sample make chunks of 4 samples (nine of them
    // and one of 1), added in two runs of chunks; 324 pixels per chunk are reduced in blocks of
    // 108; 9 input channels are a group of 8 and a group of 1; 16 output channels one 16-wide
    // block.
    check(Case {
        b: 37,
        cin: 9,
        h: 9,
        w: 9,
        cout: 16,
        k: [3, 3],
        pad: [1, 1],
        ..BASE
    });
}

#[test]
fn winograd_follows_the_direct_kernels_and_its_switch() {
    let _turn = PATHS.lock().unwrap_or_else(|e| e.into_inner());
    burn_flex::set_conv2d_winograd(false);
    assert!(!burn_flex::conv2d_winograd_active());
    burn_flex::set_conv2d_winograd(true);
    burn_flex::set_conv2d_direct(false);
    assert!(!burn_flex::conv2d_winograd_active());
    burn_flex::set_conv2d_direct(true);
    assert_eq!(
        burn_flex::conv2d_winograd_active(),
        burn_flex::conv2d_direct_active()
    );
}

#[test]
fn direct_kernels_follow_the_cpu_and_the_switch() {
    let _turn = PATHS.lock().unwrap_or_else(|e| e.into_inner());
    burn_flex::set_conv2d_direct(false);
    assert!(!burn_flex::conv2d_direct_active());
    burn_flex::set_conv2d_direct(true);
    #[cfg(target_arch = "x86_64")]
    assert_eq!(
        burn_flex::conv2d_direct_active(),
        std::arch::is_x86_feature_detected!("avx512f")
    );
    #[cfg(not(target_arch = "x86_64"))]
    assert!(!burn_flex::conv2d_direct_active());
}

/// Max pooling without padding (the patched fast path) and with padding (flex's general path):
/// values, and the input gradient of `sum(out * r)`, which goes to the first maximum of each
/// window in scan order.
#[test]
fn max_pooling_values_and_gradient() {
    let device = Device::flex();
    // (kernel, stride, padding): 2x2/2 as in madry-cnn on an odd size (last row and column
    // dropped), overlapping 3x3/2 windows, and a padded window.
    for (k, s, p) in [(2, 2, 0), (3, 2, 0), (3, 1, 1)] {
        let (b, c, h, w) = (2, 3, 7, 9);
        // Quantized values so that windows hold ties.
        let x: Vec<f32> = values(b * c * h * w, 5)
            .iter()
            .map(|v| (v * 4.0).round())
            .collect();
        let ho = (h + 2 * p - k) / s + 1;
        let wo = (w + 2 * p - k) / s + 1;
        let r = values(b * c * ho * wo, 6);
        let mut want_out = vec![0f32; r.len()];
        let mut want_dx = vec![0f32; x.len()];
        for plane in 0..b * c {
            for oh in 0..ho {
                for ow in 0..wo {
                    let mut best: Option<(f32, usize)> = None;
                    for ky in 0..k {
                        for kx in 0..k {
                            let (ih, iw) = (
                                (oh * s + ky) as isize - p as isize,
                                (ow * s + kx) as isize - p as isize,
                            );
                            if ih < 0 || iw < 0 || ih >= h as isize || iw >= w as isize {
                                continue;
                            }
                            let i = plane * h * w + ih as usize * w + iw as usize;
                            if best.is_none_or(|(v, _)| x[i] > v) {
                                best = Some((x[i], i));
                            }
                        }
                    }
                    let (v, i) = best.expect("every window overlaps the input");
                    let o = (plane * ho + oh) * wo + ow;
                    want_out[o] = v;
                    want_dx[i] += r[o];
                }
            }
        }
        let xa = Tensor::<4>::from_data(TensorData::new(x, [b, c, h, w]), &device)
            .autodiff()
            .require_grad();
        let options = MaxPoolOptions::new([k, k])
            .with_stride([s, s])
            .with_padding([p, p]);
        let out = max_pool2d(xa.clone(), options);
        let rt = Tensor::<4>::from_data(TensorData::new(r, [b, c, ho, wo]), &device).autodiff();
        let grads = (out.clone() * rt).sum().backward();
        let got_out = out.inner().into_data().try_to_vec::<f32>().unwrap();
        let got_dx = xa
            .grad(&grads)
            .unwrap()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert_eq!(
            got_out, want_out,
            "values, kernel {k} stride {s} padding {p}"
        );
        for (i, (g, w)) in got_dx.iter().zip(&want_dx).enumerate() {
            assert!(
                (g - w).abs() < 1e-5,
                "gradient[{i}] = {g}, expected {w} (kernel {k} stride {s} padding {p})"
            );
        }
    }
}

#[test]
fn max_pooling_propagates_nan_and_handles_infinities() {
    let device = Device::flex();
    // Three 2x2 windows of one 2x6 plane: a NaN among numbers, +inf next to -inf, and a tie of
    // -0.0 with 0.0 (the first in scan order wins).
    let nan = f32::NAN;
    let (inf, ninf) = (f32::INFINITY, f32::NEG_INFINITY);
    let x = vec![
        1.0, nan, ninf, 2.0, -0.0, -1.0, //
        3.0, 2.0, inf, 1.0, 0.0, -2.0,
    ];
    let xa = Tensor::<4>::from_data(TensorData::new(x, [1, 1, 2, 6]), &device)
        .autodiff()
        .require_grad();
    let out = max_pool2d(xa.clone(), MaxPoolOptions::new([2, 2]).with_stride([2, 2]));
    let grads = out.clone().sum().backward();
    let got = out.inner().into_data().try_to_vec::<f32>().unwrap();
    assert!(
        got[0].is_nan(),
        "a window with a NaN pools to NaN, got {}",
        got[0]
    );
    assert_eq!(got[1], inf);
    assert_eq!(
        got[2].to_bits(),
        (-0.0f32).to_bits(),
        "the first of tied zeros"
    );
    let dx = xa
        .grad(&grads)
        .unwrap()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    // The gradient goes to the NaN, to +inf and to the first zero.
    let hot: Vec<usize> = (0..dx.len()).filter(|&i| dx[i] != 0.0).collect();
    assert_eq!(hot, vec![1, 4, 8]);
}

/// `mask_where` (also behind `max_pair` / `min_pair`, hence behind every L-inf projection) takes
/// each element from `value` where the mask is set and keeps it elsewhere, bit for bit: NaN
/// payloads and signed zeros survive. A length that is no multiple of any vector width, on
/// float (4-byte) and int (8-byte) elements.
#[test]
fn mask_where_selects_each_element_bit_for_bit() {
    let device = Device::flex();
    let n = 1037;
    let noise = values(2 * n, 7);
    let specials = [f32::NAN, -0.0, 0.0, f32::INFINITY, f32::NEG_INFINITY];
    let t: Vec<f32> = (0..n)
        .map(|i| {
            if i % 97 == 3 {
                specials[i % 5]
            } else {
                noise[i]
            }
        })
        .collect();
    let v: Vec<f32> = (0..n)
        .map(|i| {
            if i % 89 == 5 {
                specials[(i + 2) % 5]
            } else {
                noise[n + i]
            }
        })
        .collect();
    // A mask that follows the data, as a projection's does.
    let m: Vec<bool> = (0..n).map(|i| noise[i] < noise[n + i]).collect();
    let want: Vec<u32> = (0..n)
        .map(|i| if m[i] { v[i] } else { t[i] }.to_bits())
        .collect();
    let mask = Tensor::<1, burn::tensor::Bool>::from_data(TensorData::new(m.clone(), [n]), &device);
    let got = Tensor::<1>::from_data(TensorData::new(t, [n]), &device).mask_where(
        mask.clone(),
        Tensor::from_data(TensorData::new(v, [n]), &device),
    );
    let got: Vec<u32> = got
        .into_data()
        .try_to_vec::<f32>()
        .expect("f32")
        .iter()
        .map(|x| x.to_bits())
        .collect();
    assert_eq!(got, want, "f32 mask_where");

    // 8-byte elements: f64 (bit for bit again).
    let t64: Vec<f64> = (0..n).map(|i| f64::from(noise[i]) * 1e-300).collect();
    let v64: Vec<f64> = (0..n).map(|i| -f64::from(noise[n + i])).collect();
    let want: Vec<u64> = (0..n)
        .map(|i| if m[i] { v64[i] } else { t64[i] }.to_bits())
        .collect();
    let f64_opts = (&device, burn::tensor::DType::F64);
    let got = Tensor::<1>::from_data(TensorData::new(t64, [n]), f64_opts).mask_where(
        mask.clone(),
        Tensor::from_data(TensorData::new(v64, [n]), f64_opts),
    );
    let got: Vec<u64> = got
        .into_data()
        .try_to_vec::<f64>()
        .expect("f64")
        .iter()
        .map(|x| x.to_bits())
        .collect();
    assert_eq!(got, want, "f64 mask_where");

    // Integers (the default int type).
    let ti: Vec<i32> = (0..n as i32).map(|i| i * 3 - 1000).collect();
    let vi: Vec<i32> = (0..n as i32).map(|i| -(i * 7) + i32::MAX / 2).collect();
    let want: Vec<i32> = (0..n).map(|i| if m[i] { vi[i] } else { ti[i] }).collect();
    let got = Tensor::<1, burn::tensor::Int>::from_data(TensorData::new(ti, [n]), &device)
        .mask_where(mask, Tensor::from_data(TensorData::new(vi, [n]), &device));
    assert_eq!(
        got.into_data().try_to_vec::<i32>().expect("i32"),
        want,
        "int mask_where"
    );
}

/// `mask_where` with broadcast operands, as a batched projection uses it: a row mask (`[B, 1]`
/// widened to `[B, N]`), a row value (`min_pair` against a per-row bound widened), a column
/// operand (`[1, N]`) and a transposed one (no unit stride). Flex runs these through its
/// three-way zip (patched to fill blocks in parallel, with each mix of contiguous and broadcast
/// rows specialized): large enough for several blocks, with rows that straddle block boundaries,
/// on the out-of-place path (shared operands) and the in-place one (a uniquely owned operand);
/// checked bit for bit against the host.
#[test]
fn mask_where_with_broadcast_operands_bit_for_bit() {
    use burn::tensor::Bool;
    let device = Device::flex();
    let (b, n) = (301, 997);
    let noise = values(b * n + b + n, 11);
    let full: Vec<f32> = noise[..b * n].to_vec();
    let per_row: Vec<f32> = noise[b * n..b * n + b].to_vec();
    let per_col: Vec<f32> = noise[b * n + b..].to_vec();
    let row_mask: Vec<bool> = per_row.iter().map(|v| *v > 0.1).collect();
    let full_t = || Tensor::<2>::from_data(TensorData::new(full.clone(), [b, n]), &device);
    let rows_t = Tensor::<2>::from_data(TensorData::new(per_row.clone(), [b, 1]), &device);
    let cols_t = Tensor::<2>::from_data(TensorData::new(per_col.clone(), [1, n]), &device);
    let row_mask_t =
        Tensor::<2, Bool>::from_data(TensorData::new(row_mask.clone(), [b, 1]), &device)
            .expand([b, n]);
    let bits = |t: Tensor<2>| -> Vec<u32> {
        t.into_data()
            .try_to_vec::<f32>()
            .expect("f32")
            .iter()
            .map(|x| x.to_bits())
            .collect()
    };
    let host = |f: &dyn Fn(usize, usize) -> f32| -> Vec<u32> {
        (0..b * n).map(|k| f(k / n, k % n).to_bits()).collect()
    };

    // A row mask selecting whole rows of a column operand; the tensor shared (out of place).
    let shared = full_t();
    let keep = shared.clone();
    let got = shared.mask_where(row_mask_t.clone(), cols_t.clone().expand([b, n]));
    drop(keep);
    let want = host(&|i, j| {
        if row_mask[i] {
            per_col[j]
        } else {
            full[i * n + j]
        }
    });
    assert_eq!(bits(got), want, "row mask, column value, out of place");

    // The same on a uniquely owned tensor (in place).
    let got = full_t().mask_where(row_mask_t.clone(), cols_t.clone().expand([b, n]));
    assert_eq!(bits(got), want, "row mask, column value, in place");

    // min_pair against a per-row bound widened: the projection's clamp to a per-row radius.
    let shared = full_t();
    let keep = shared.clone();
    let got = shared.min_pair(rows_t.clone().expand([b, n]));
    drop(keep);
    let want = host(&|i, j| {
        let (x, r) = (full[i * n + j], per_row[i]);
        if r < x { r } else { x }
    });
    assert_eq!(bits(got), want, "min_pair with a widened row");

    // A transposed operand (inner stride b) with a data-dependent mask.
    let tr = Tensor::<2>::from_data(TensorData::new(noise[..b * n].to_vec(), [n, b]), &device)
        .transpose();
    let mask = full_t().greater(tr.clone());
    let got = full_t().mask_where(mask, tr);
    let want = host(&|i, j| {
        let (x, t) = (full[i * n + j], noise[j * b + i]);
        if x > t { t } else { x }
    });
    assert_eq!(bits(got), want, "transposed value");
}

/// `sign` (patched to compare instead of calling `copysign`): NaN and both zeros give 0,
/// infinities and subnormals their sign, on f32 and f64.
#[test]
fn sign_of_specials() {
    let device = Device::flex();
    let x = [
        f32::NAN,
        -0.0,
        0.0,
        3.5,
        -2.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        1e-45,
        -1e-45,
    ];
    let want = [0.0, 0.0, 0.0, 1.0, -1.0, 1.0, -1.0, 1.0, -1.0];
    let got = Tensor::<1>::from_data(TensorData::new(x.to_vec(), [x.len()]), &device).sign();
    let got = got.into_data().try_to_vec::<f32>().expect("f32");
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&got), bits(&want), "f32 sign");
    let x64: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
    let got = Tensor::<1>::from_data(
        TensorData::new(x64, [x.len()]),
        (&device, burn::tensor::DType::F64),
    )
    .sign();
    let got = got.into_data().try_to_vec::<f64>().expect("f64");
    let want64: Vec<f64> = want.iter().map(|&v| f64::from(v)).collect();
    assert_eq!(got, want64, "f64 sign");
    assert!(
        got.iter().all(|v| v.to_bits() != (-0.0f64).to_bits()),
        "no negative zero"
    );
}

/// Elementwise passes over at least 64k elements run on rayon's pool in blocks (patched): every
/// element of a tensor that is no multiple of the block size, unique (in place) or shared (fresh
/// output), for a unary op (ReLU), a binary op without a SIMD kernel (atan2) and one with (add).
#[test]
fn large_elementwise_passes_cover_every_element() {
    let device = Device::flex();
    let n = 200_003;
    let a = values(n, 11);
    let b = values(n, 12);
    let t = |v: &[f32]| Tensor::<1>::from_data(TensorData::new(v.to_vec(), [n]), &device);
    let host = |x: Tensor<1>| x.into_data().try_to_vec::<f32>().expect("f32");
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();

    let want: Vec<f32> = a.iter().map(|&x| if x > 0.0 { x } else { 0.0 }).collect();
    let shared = t(&a);
    let fresh = burn::tensor::activation::relu(shared.clone());
    assert_eq!(bits(&host(fresh)), bits(&want), "relu, fresh output");
    assert_eq!(host(shared.clone()), a, "relu left its shared input alone");
    let in_place = burn::tensor::activation::relu(t(&a));
    assert_eq!(bits(&host(in_place)), bits(&want), "relu, in place");

    let want: Vec<f32> = a.iter().zip(&b).map(|(&x, &y)| x.atan2(y)).collect();
    assert_eq!(bits(&host(t(&a).atan2(t(&b)))), bits(&want), "atan2");
    let want: Vec<f32> = a.iter().zip(&b).map(|(&x, &y)| x + y).collect();
    assert_eq!(bits(&host(t(&a) + t(&b))), bits(&want), "add");
}
