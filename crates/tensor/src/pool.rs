//! Max pooling kernels (window maximum with its index) and global average pooling.

use rayon::prelude::*;

use crate::conv::ConvGeometry;
use crate::parallel::{init_default, zeroed_chunks};
use crate::Tensor;

/// Max pooling of an NCHW tensor over windows given by `g`.
///
/// Returns the pooled tensor `[N, C, OH, OW]` and, for every output, the flat
/// index *within its `H×W` plane* of the input that won (first maximum on ties).
///
/// **Panics** if `x`'s shape is not the geometry's input shape.
pub fn maxpool2d(x: &Tensor, g: &ConvGeometry) -> (Tensor, Vec<u32>) {
    assert_eq!(
        x.shape(),
        [g.n, g.c, g.h, g.w],
        "maxpool2d: input shape vs geometry"
    );
    let (ip, op) = (g.h * g.w, g.oh * g.ow);
    let shape = [g.n, g.c, g.oh, g.ow];
    if op == 0 || ip == 0 {
        return (Tensor::zeros(&shape), vec![0; g.n * g.c * op]);
    }
    // Each plane's outputs are zeroed by the task that then writes them (in
    // cache), not by a zero-fill pass over both whole buffers first.
    let len = g.n * g.c * op;
    let (mut out, mut idx): (Vec<f32>, Vec<u32>) =
        (Vec::with_capacity(len), Vec::with_capacity(len));
    out.spare_capacity_mut()[..len]
        .par_chunks_mut(op)
        .zip(idx.spare_capacity_mut()[..len].par_chunks_mut(op))
        .zip(x.data().par_chunks(ip))
        .for_each(|((o, ix), xp)| {
            maxpool_plane(init_default(o), init_default(ix), xp, g);
        });
    // SAFETY: the planes cover all `len` elements of both buffers, and each
    // task initialised its planes (`init_default`) before writing them.
    unsafe {
        out.set_len(len);
        idx.set_len(len);
    }
    let out = Tensor::from_vec(&shape, out).expect("length from geometry");
    (out, idx)
}

/// Max pooling of one `H×W` plane `xp` over the windows of `g` (whose
/// `n` and `c` are ignored): writes the `OH×OW` maxima to `o` and their flat
/// indices within the plane to `ix` (first maximum on ties; a NaN wins so it
/// propagates). [`maxpool2d`] runs it on every plane; a fused convolution
/// runs it on each output plane while that plane is still in cache.
///
/// **Panics** if a slice is shorter than the geometry requires.
pub fn maxpool_plane(o: &mut [f32], ix: &mut [u32], xp: &[f32], g: &ConvGeometry) {
    if g.kh == 2 && g.kw == 2 && g.stride == 2 && g.pad == 0 {
        return pool_2x2(o, ix, xp, g);
    }
    // Without padding every window of a valid output lies inside the plane.
    for oy in 0..g.oh {
        for ox in 0..g.ow {
            let first = oy * g.stride * g.w + ox * g.stride;
            let (mut best, mut arg) = (xp[first], first);
            for ky in 0..g.kh {
                let base = (oy * g.stride + ky) * g.w + ox * g.stride;
                for (kx, &v) in xp[base..base + g.kw].iter().enumerate() {
                    // Selects, not a branch: on real activations the comparison
                    // is a coin flip and a branch mispredicts half the time.
                    let take = takes_over(v, best);
                    best = if take { v } else { best };
                    arg = if take { base + kx } else { arg };
                }
            }
            o[oy * g.ow + ox] = best;
            ix[oy * g.ow + ox] = arg as u32;
        }
    }
}

/// The backward pass of [`maxpool_plane`]: adds each output gradient `go[j]`
/// to `d[ix[j]]` (the input that won window `j`), in output order.
///
/// **Panics** if an index is outside `d`.
#[inline]
pub fn maxpool_plane_backward(d: &mut [f32], go: &[f32], ix: &[u32]) {
    for (&gv, &i) in go.iter().zip(ix) {
        d[i as usize] += gv;
    }
}

/// Whether `v` replaces `best` as the window maximum: strictly greater (the
/// first maximum wins ties), or a NaN where `best` is not (NaN propagates).
#[inline(always)]
fn takes_over(v: f32, best: f32) -> bool {
    (v > best || v.is_nan()) && !best.is_nan()
}

/// The common 2×2, stride-2 window of one plane: the same result as the
/// general loop (windows visited row by row), with the four candidates read
/// straight from two input rows and chosen by selects, not branches — on real
/// activations each comparison is a coin flip that a branch mispredicts.
fn pool_2x2(o: &mut [f32], ix: &mut [u32], xp: &[f32], g: &ConvGeometry) {
    for oy in 0..g.oh {
        let top = 2 * oy * g.w;
        let (r0, r1) = (
            &xp[top..top + 2 * g.ow],
            &xp[top + g.w..top + g.w + 2 * g.ow],
        );
        let rows = r0.chunks_exact(2).zip(r1.chunks_exact(2));
        let outs = o[oy * g.ow..(oy + 1) * g.ow]
            .iter_mut()
            .zip(&mut ix[oy * g.ow..(oy + 1) * g.ow]);
        for (ox, ((out, arg), (a, b))) in outs.zip(rows).enumerate() {
            let first = (top + 2 * ox) as u32;
            let (mut m, mut k) = (a[0], first);
            for (v, at) in [
                (a[1], first + 1),
                (b[0], first + g.w as u32),
                (b[1], first + g.w as u32 + 1),
            ] {
                let take = takes_over(v, m);
                m = if take { v } else { m };
                k = if take { at } else { k };
            }
            *out = m;
            *arg = k;
        }
    }
}

/// Routes an output gradient back to the winning inputs of [`maxpool2d`].
///
/// **Panics** if `grad_out` or `idx` do not match the geometry.
pub fn maxpool2d_backward(grad_out: &Tensor, idx: &[u32], g: &ConvGeometry) -> Tensor {
    assert_eq!(
        grad_out.shape(),
        [g.n, g.c, g.oh, g.ow],
        "maxpool2d_backward: grad shape"
    );
    assert_eq!(
        idx.len(),
        grad_out.len(),
        "maxpool2d_backward: index length"
    );
    let (ip, op) = (g.h * g.w, g.oh * g.ow);
    if op == 0 || ip == 0 {
        return Tensor::zeros(&[g.n, g.c, g.h, g.w]);
    }
    // Each plane is zeroed right before its gradients are added, while it is
    // in cache, instead of zero-filling the whole buffer in a separate pass.
    let (go, len) = (grad_out.data(), g.n * g.c * ip);
    let dx = zeroed_chunks(
        len,
        ip,
        true,
        || (),
        |_, plane, d| {
            maxpool_plane_backward(d, &go[plane * op..][..op], &idx[plane * op..][..op]);
        },
    );
    Tensor::from_vec(&[g.n, g.c, g.h, g.w], dx).expect("length from geometry")
}

/// Mean over `H×W` of an NCHW tensor: shape `[N, C]`.
///
/// **Panics** unless 4-D.
pub fn global_avg_pool(x: &Tensor) -> Tensor {
    let (n, c, p) = crate::reduce::nchw_dims("global_avg_pool", x);
    let d = x.data();
    let inv = 1.0 / p.max(1) as f32;
    let out: Vec<f32> = (0..n * c)
        .map(|i| d[i * p..(i + 1) * p].iter().sum::<f32>() * inv)
        .collect();
    Tensor::from_vec(&[n, c], out).expect("n*c values")
}

/// Gradient of [`global_avg_pool`]: spreads `grad[n, c] / (H·W)` over the plane.
///
/// **Panics** if `grad` is not `[N, C]` of `input_shape`.
pub fn global_avg_pool_backward(grad: &Tensor, input_shape: &[usize]) -> Tensor {
    assert!(
        input_shape.len() == 4 && grad.shape() == [input_shape[0], input_shape[1]],
        "global_avg_pool_backward: grad {:?} for input {:?}",
        grad.shape(),
        input_shape
    );
    let p = input_shape[2] * input_shape[3];
    let inv = 1.0 / p.max(1) as f32;
    let mut dx = Tensor::zeros(input_shape);
    if p == 0 {
        return dx;
    }
    dx.data_mut()
        .chunks_mut(p)
        .zip(grad.data())
        .for_each(|(plane, &gv)| plane.fill(gv * inv));
    dx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maxpool_hand_example() {
        let x = Tensor::from_vec(
            &[1, 1, 4, 4],
            vec![
                1., 2., 5., 3., 4., 0., 1., 1., 9., 9., 2., 8., 0., 1., 7., 6.,
            ],
        )
        .unwrap();
        let g = ConvGeometry::new(x.shape(), 2, 2, 2, 0).unwrap();
        let (y, idx) = maxpool2d(&x, &g);
        assert_eq!(y.data(), &[4., 5., 9., 8.]);
        assert_eq!(idx, vec![4, 2, 8, 11]); // first 9 wins the tie
        let gy = Tensor::from_vec(&[1, 1, 2, 2], vec![1., 2., 3., 4.]).unwrap();
        let dx = maxpool2d_backward(&gy, &idx, &g);
        let mut want = vec![0.0; 16];
        want[4] = 1.;
        want[2] = 2.;
        want[8] = 3.;
        want[11] = 4.;
        assert_eq!(dx.data(), want.as_slice());
    }

    /// Window maximum by the definition: windows in row-major order, first
    /// maximum on ties, the first NaN wins.
    fn naive(x: &[f32], h: usize, w: usize, k: usize, s: usize) -> (Vec<f32>, Vec<u32>) {
        let (oh, ow) = ((h - k) / s + 1, (w - k) / s + 1);
        let (mut out, mut idx) = (Vec::new(), Vec::new());
        for oy in 0..oh {
            for ox in 0..ow {
                let mut best: Option<(f32, usize)> = None;
                for ky in 0..k {
                    for kx in 0..k {
                        let i = (oy * s + ky) * w + ox * s + kx;
                        let v = x[i];
                        best = match best {
                            None => Some((v, i)),
                            Some((b, _)) if b.is_nan() => best,
                            Some(_) if v.is_nan() => Some((v, i)),
                            Some((b, _)) if v > b => Some((v, i)),
                            _ => best,
                        };
                    }
                }
                let (v, i) = best.unwrap();
                out.push(v);
                idx.push(i as u32);
            }
        }
        (out, idx)
    }

    #[test]
    fn fast_2x2_path_and_general_path_match_the_definition() {
        // Few distinct values (many ties), some NaNs, odd sizes (last row and
        // column not covered by a 2×2 window).
        let (h, w) = (7, 9);
        let mut s = 12345u32;
        let mut vals: Vec<f32> = (0..2 * 3 * h * w)
            .map(|_| {
                s = s.wrapping_mul(1_103_515_245).wrapping_add(12345);
                ((s >> 16) % 5) as f32 - 2.0
            })
            .collect();
        for i in (0..vals.len()).step_by(17) {
            vals[i] = f32::NAN;
        }
        let x = Tensor::from_vec(&[2, 3, h, w], vals).unwrap();
        for (k, st) in [(2, 2), (3, 2), (2, 1)] {
            let g = ConvGeometry::new(x.shape(), k, k, st, 0).unwrap();
            let (y, idx) = maxpool2d(&x, &g);
            let op = g.oh * g.ow;
            for plane in 0..6 {
                let xp = &x.data()[plane * h * w..(plane + 1) * h * w];
                let (want, want_idx) = naive(xp, h, w, k, st);
                let got = &y.data()[plane * op..(plane + 1) * op];
                assert_eq!(&idx[plane * op..(plane + 1) * op], want_idx.as_slice());
                for (a, b) in got.iter().zip(&want) {
                    assert!(
                        a == b || (a.is_nan() && b.is_nan()),
                        "{k}x{k}/{st}: {a} vs {b}"
                    );
                }
            }
        }
    }

    #[test]
    fn global_avg_pool_values() {
        let x = Tensor::from_vec(&[1, 2, 1, 2], vec![1., 3., 10., 20.]).unwrap();
        let y = global_avg_pool(&x);
        assert_eq!(y.data(), &[2., 15.]);
        let dx =
            global_avg_pool_backward(&Tensor::from_vec(&[1, 2], vec![2., 4.]).unwrap(), x.shape());
        assert_eq!(dx.data(), &[1., 1., 2., 2.]);
    }
}
