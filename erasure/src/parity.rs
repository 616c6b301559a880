//! A stripe's parity blocks, computed with GFNI where the CPU has it.
//!
//! Parity block p is the sum over the data blocks j of `c[p][j] * block j`, in GF(2^8) as
//! `reed-solomon-erasure` defines it. Multiplying a byte by a constant of that field is a linear
//! map over GF(2): an 8x8 bit matrix, which `vgf2p8affineqb` applies to 64 bytes in one
//! instruction, whatever the field's polynomial. So on a CPU with GFNI and AVX-512BW one pass
//! over the data, 64 bytes of every block at a time, writes each parity byte once; the library's
//! kernel (table lookups, AVX2 at best) passes over each parity block once per data block and
//! needs the parity zeroed first. For 4+2 stripes of 1 MiB the library's parity and its zeroing
//! took about 6% of a 64 MiB PUT's CPU (see docs/performance.md).
//!
//! Elsewhere `Parity` leaves the work to `ReedSolomon::encode_sep`. Both give the same bytes (the
//! tests compare them), so fragments do not depend on which CPU wrote them.

use bytes::BytesMut;
use reed_solomon_erasure::galois_8::{self, ReedSolomon};

/// How one codec computes parity.
pub(crate) enum Parity {
    /// `matrices[p * k + j]`: multiplication by `c[p][j]`, as `vgf2p8affineqb` takes it. Exists
    /// only where `gfni_cpu` holds, which is what makes the kernel safe to call.
    Gfni {
        matrices: Vec<u64>,
    },
    Library,
}

/// Whether this CPU runs the GFNI kernel.
fn gfni_cpu() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("gfni")
            && std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

impl Parity {
    /// The fastest way this CPU has to compute `rs`'s parity.
    pub(crate) fn new(rs: &ReedSolomon) -> Parity {
        if !gfni_cpu() {
            return Parity::Library;
        }
        let matrices = coefficients(rs).into_iter().map(mul_matrix).collect();
        Parity::Gfni { matrices }
    }

    /// Whether this is the GFNI kernel.
    #[cfg(test)]
    pub(crate) fn is_gfni(&self) -> bool {
        matches!(self, Parity::Gfni { .. })
    }

    /// Appends the parity of `data` (k blocks of one length) to each of `parity` (m empty
    /// buffers); `rs` is the code this was made for.
    pub(crate) fn encode(
        &self,
        rs: &ReedSolomon,
        data: &[&[u8]],
        parity: &mut [BytesMut],
    ) -> Result<(), reed_solomon_erasure::Error> {
        let len = data.first().map_or(0, |d| d.len());
        assert!(data.iter().all(|d| d.len() == len) && parity.iter().all(|p| p.is_empty()));
        match self {
            Parity::Gfni { matrices } => {
                if data.len() != rs.data_shard_count() || parity.len() != rs.parity_shard_count() {
                    return Err(reed_solomon_erasure::Error::TooFewShards);
                }
                for p in parity.iter_mut() {
                    p.reserve(len);
                }
                #[cfg(target_arch = "x86_64")]
                // SAFETY: the variant exists only where `gfni_cpu` found the features; every
                // parity buffer has room for `len` bytes, which the kernel writes in full before
                // they are counted as the buffer's.
                unsafe {
                    let mut outputs: Vec<*mut u8> =
                        parity.iter_mut().map(|p| p.as_mut_ptr()).collect();
                    gfni::encode(matrices, data, &mut outputs, len);
                    for p in parity.iter_mut() {
                        p.set_len(len);
                    }
                }
                Ok(())
            }
            Parity::Library => {
                for p in parity.iter_mut() {
                    p.resize(len, 0);
                }
                let mut outputs: Vec<&mut [u8]> = parity.iter_mut().map(|p| &mut p[..]).collect();
                rs.encode_sep(data, &mut outputs)
            }
        }
    }
}

/// `c[p][j]`, row by row: the parity of data block j alone being 1 (and every other 0) in one
/// byte is `c[p][j]` in parity block p.
fn coefficients(rs: &ReedSolomon) -> Vec<u8> {
    let (k, m) = (rs.data_shard_count(), rs.parity_shard_count());
    let mut c = vec![0; k * m];
    for j in 0..k {
        let data: Vec<[u8; 1]> = (0..k).map(|i| [u8::from(i == j)]).collect();
        let data: Vec<&[u8]> = data.iter().map(|d| &d[..]).collect();
        let mut parity = vec![[0u8; 1]; m];
        let mut outputs: Vec<&mut [u8]> = parity.iter_mut().map(|p| &mut p[..]).collect();
        rs.encode_sep(&data, &mut outputs)
            .expect("k one-byte blocks into m");
        for (p, byte) in parity.iter().enumerate() {
            c[p * k + j] = byte[0];
        }
    }
    c
}

/// Multiplication by `c` as the bit matrix `vgf2p8affineqb` applies: bit i of the product of x
/// is the parity of `x & row i`, and row i is byte 7 - i of the matrix. Row i has bit b set when
/// the product of `c` and `1 << b` has bit i set (the map is linear, so these eight products
/// are all of it).
fn mul_matrix(c: u8) -> u64 {
    let mut matrix = 0u64;
    for i in 0..8 {
        let row = (0..8)
            .filter(|b| galois_8::mul(c, 1 << b) >> i & 1 == 1)
            .fold(0u8, |row, b| row | 1 << b);
        matrix |= u64::from(row) << (8 * (7 - i));
    }
    matrix
}

#[cfg(target_arch = "x86_64")]
mod gfni {
    use std::arch::x86_64::*;

    /// Writes `len` bytes of each parity block at `outputs[p]`, 64 bytes of every block at a
    /// time (the tail under a mask), so that each data byte is read from L1 and each parity byte
    /// written once.
    ///
    /// # Safety
    /// The CPU must have GFNI, AVX-512F and AVX-512BW; `matrices` holds `outputs.len() *
    /// data.len()` matrices; each data block holds at least `len` bytes, and each output has room
    /// for `len`.
    #[target_feature(enable = "avx512f,avx512bw,gfni")]
    pub unsafe fn encode(matrices: &[u64], data: &[&[u8]], outputs: &mut [*mut u8], len: usize) {
        let k = data.len();
        let mut at = 0;
        while at < len {
            let mask: __mmask64 = match len - at {
                n if n >= 64 => !0,
                n => (1 << n) - 1,
            };
            for (p, &out) in outputs.iter().enumerate() {
                let mut sum = _mm512_setzero_si512();
                for (j, block) in data.iter().enumerate() {
                    let x = _mm512_maskz_loadu_epi8(mask, block.as_ptr().add(at).cast());
                    let a = _mm512_set1_epi64(matrices[p * k + j] as i64);
                    sum = _mm512_xor_si512(sum, _mm512_gf2p8affine_epi64_epi8::<0>(x, a));
                }
                _mm512_mask_storeu_epi8(out.add(at).cast(), mask, sum);
            }
            at += 64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `vgf2p8affineqb` computes for one byte, as Intel's manual gives it.
    fn affine(matrix: u64, x: u8) -> u8 {
        (0..8).fold(0, |out, i| {
            let row = (matrix >> (8 * (7 - i))) as u8;
            out | (((row & x).count_ones() & 1) as u8) << i
        })
    }

    #[test]
    fn each_matrix_multiplies_as_the_field_does() {
        for c in 0..=255u8 {
            let matrix = mul_matrix(c);
            for x in 0..=255u8 {
                assert_eq!(affine(matrix, x), galois_8::mul(c, x), "{c} * {x}");
            }
        }
    }

    fn library(rs: &ReedSolomon, data: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut parity = vec![vec![0; data[0].len()]; rs.parity_shard_count()];
        let mut outputs: Vec<&mut [u8]> = parity.iter_mut().map(|p| &mut p[..]).collect();
        rs.encode_sep(data, &mut outputs).unwrap();
        parity
    }

    /// The parity this CPU's way computes is the library's, for the geometries Tessera uses
    /// and lengths around the kernel's 64 bytes.
    #[test]
    fn parity_is_the_librarys_on_every_geometry_and_length() {
        assert_eq!(
            Parity::new(&ReedSolomon::new(4, 2).unwrap()).is_gfni(),
            gfni_cpu()
        );
        let mut seed = 0x9e37_79b9u32;
        let mut byte = move || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed as u8
        };
        for (k, m) in [(4, 2), (2, 4), (1, 1), (6, 3), (10, 4)] {
            let rs = ReedSolomon::new(k, m).unwrap();
            let parity = Parity::new(&rs);
            for len in [1, 63, 64, 65, 127, 1000, 4096, 256 << 10] {
                let data: Vec<Vec<u8>> =
                    (0..k).map(|_| (0..len).map(|_| byte()).collect()).collect();
                let data: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
                let mut out: Vec<BytesMut> = (0..m).map(|_| BytesMut::new()).collect();
                parity.encode(&rs, &data, &mut out).unwrap();
                let expected = library(&rs, &data);
                for (p, (got, want)) in out.iter().zip(&expected).enumerate() {
                    assert!(got[..] == want[..], "{k}+{m}, {len} bytes, parity {p}");
                }
            }
        }
    }
}
