//! SHA-256 (FIPS 180-4), for the delta manifest's per-file digests.
//!
//! Written out here rather than taken from the `sha2` crate: that stack
//! (digest, block-buffer, crypto-common, generic-array, typenum,
//! cpufeatures, cfg-if) would add seven crates to every recipe's crate list
//! and to the device binary for one function of some eighty lines, checked
//! below against the standard's test vectors. The digest guards against a
//! base file edited on the device, not against an attacker: the artifact
//! itself is verified (and signed) by Mender.

const K: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

const H0: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// An incremental SHA-256.
#[derive(Clone)]
pub struct Sha256 {
    state: [u32; 8],
    block: [u8; 64],
    filled: usize,
    length: u64,
}

impl Default for Sha256 {
    fn default() -> Self {
        Sha256::new()
    }
}

impl Sha256 {
    pub fn new() -> Sha256 {
        Sha256 {
            state: H0,
            block: [0; 64],
            filled: 0,
            length: 0,
        }
    }

    pub fn update(&mut self, mut data: &[u8]) {
        self.length = self.length.wrapping_add(data.len() as u64);
        if self.filled > 0 {
            let take = (64 - self.filled).min(data.len());
            self.block[self.filled..self.filled + take].copy_from_slice(&data[..take]);
            self.filled += take;
            data = &data[take..];
            if self.filled < 64 {
                return;
            }
            let block = self.block;
            compress_blocks(&mut self.state, &block);
            self.filled = 0;
        }
        let whole = data.len() / 64 * 64;
        compress_blocks(&mut self.state, &data[..whole]);
        let rest = &data[whole..];
        self.block[..rest.len()].copy_from_slice(rest);
        self.filled = rest.len();
    }

    pub fn finish(mut self) -> [u8; 32] {
        let bits = self.length.wrapping_mul(8);
        let mut pad = [0u8; 72];
        pad[0] = 0x80;
        let zeros = if self.filled < 56 {
            55 - self.filled
        } else {
            119 - self.filled
        };
        pad[1 + zeros..9 + zeros].copy_from_slice(&bits.to_be_bytes());
        // The length was taken above; that `update` counts the padding in
        // too no longer matters.
        self.update(&pad[..9 + zeros]);
        debug_assert_eq!(self.filled, 0);
        let mut out = [0u8; 32];
        for (i, word) in self.state.iter().enumerate() {
            out[4 * i..4 * i + 4].copy_from_slice(&word.to_be_bytes());
        }
        out
    }
}

/// The digest of `data` in lower-case hex, as the manifest writes it.
pub fn hex(digest: &[u8; 32]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(64);
    for b in digest {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Whole 64-byte blocks: with the x86 SHA extensions where the CPU has them
/// (Intel since Goldmont and Ice Lake, AMD since Zen), a tenfold speed-up
/// that decides whether a delta installs faster than the full artifact (the
/// device hashes every file it takes from the installed tree); the portable
/// rounds elsewhere.
fn compress_blocks(state: &mut [u32; 8], blocks: &[u8]) {
    debug_assert_eq!(blocks.len() % 64, 0);
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("sha")
            && std::is_x86_feature_detected!("sse2")
            && std::is_x86_feature_detected!("ssse3")
            && std::is_x86_feature_detected!("sse4.1")
        {
            // SAFETY: the CPU has every feature the function is compiled for.
            unsafe { x86::compress(state, blocks) };
            return;
        }
    }
    for block in blocks.chunks_exact(64) {
        compress(state, block.try_into().expect("64 bytes"));
    }
}

/// The SHA-NI rounds, as Intel's white paper ("Intel SHA Extensions", 2013)
/// lays them out: state kept as ABEF/CDGH, four rounds per two
/// `sha256rnds2`, the schedule by `sha256msg1`/`sha256msg2`.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::K;

    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    unsafe fn schedule(v0: __m128i, v1: __m128i, v2: __m128i, v3: __m128i) -> __m128i {
        let t1 = _mm_sha256msg1_epu32(v0, v1);
        let t2 = _mm_alignr_epi8(v3, v2, 4);
        _mm_sha256msg2_epu32(_mm_add_epi32(t1, t2), v3)
    }

    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    pub(super) unsafe fn compress(state: &mut [u32; 8], blocks: &[u8]) {
        let mask = _mm_set_epi64x(
            0x0c0d_0e0f_0809_0a0bu64 as i64,
            0x0405_0607_0001_0203u64 as i64,
        );
        let dcba = _mm_loadu_si128(state.as_ptr() as *const __m128i);
        let efgh = _mm_loadu_si128(state.as_ptr().add(4) as *const __m128i);
        let cdab = _mm_shuffle_epi32(dcba, 0xb1);
        let efgh = _mm_shuffle_epi32(efgh, 0x1b);
        let mut abef = _mm_alignr_epi8(cdab, efgh, 8);
        let mut cdgh = _mm_blend_epi16(efgh, cdab, 0xf0);

        macro_rules! rounds4 {
            ($w:expr, $i:expr) => {{
                let k = _mm_loadu_si128(K.as_ptr().add(4 * $i) as *const __m128i);
                let t1 = _mm_add_epi32($w, k);
                cdgh = _mm_sha256rnds2_epu32(cdgh, abef, t1);
                abef = _mm_sha256rnds2_epu32(abef, cdgh, _mm_shuffle_epi32(t1, 0x0e));
            }};
        }
        for block in blocks.chunks_exact(64) {
            let (abef_was, cdgh_was) = (abef, cdgh);
            let p = block.as_ptr() as *const __m128i;
            let mut w0 = _mm_shuffle_epi8(_mm_loadu_si128(p), mask);
            let mut w1 = _mm_shuffle_epi8(_mm_loadu_si128(p.add(1)), mask);
            let mut w2 = _mm_shuffle_epi8(_mm_loadu_si128(p.add(2)), mask);
            let mut w3 = _mm_shuffle_epi8(_mm_loadu_si128(p.add(3)), mask);
            rounds4!(w0, 0);
            rounds4!(w1, 1);
            rounds4!(w2, 2);
            rounds4!(w3, 3);
            for i in 1..4 {
                w0 = schedule(w0, w1, w2, w3);
                rounds4!(w0, 4 * i);
                w1 = schedule(w1, w2, w3, w0);
                rounds4!(w1, 4 * i + 1);
                w2 = schedule(w2, w3, w0, w1);
                rounds4!(w2, 4 * i + 2);
                w3 = schedule(w3, w0, w1, w2);
                rounds4!(w3, 4 * i + 3);
            }
            abef = _mm_add_epi32(abef, abef_was);
            cdgh = _mm_add_epi32(cdgh, cdgh_was);
        }
        let feba = _mm_shuffle_epi32(abef, 0x1b);
        let dchg = _mm_shuffle_epi32(cdgh, 0xb1);
        let dcba = _mm_blend_epi16(feba, dchg, 0xf0);
        let hgef = _mm_alignr_epi8(dchg, feba, 8);
        _mm_storeu_si128(state.as_mut_ptr() as *mut __m128i, dcba);
        _mm_storeu_si128(state.as_mut_ptr().add(4) as *mut __m128i, hgef);
    }
}

/// One 64-byte block. The rounds are written out eight at a time (the
/// variables rotate by renaming, not by moves) and the schedule is a
/// 16-word ring: at the size profile (`opt-level = "z"`) the compiler
/// neither unrolls a loop nor drops its bounds checks, and the plain loop of
/// the standard's pseudo-code hashed at half this speed.
fn compress(state: &mut [u32; 8], block: &[u8; 64]) {
    let mut w = [0u32; 16];
    for (word, bytes) in w.iter_mut().zip(block.chunks_exact(4)) {
        *word = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    }
    let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = *state;

    macro_rules! round {
        ($a:ident, $b:ident, $c:ident, $d:ident, $e:ident, $f:ident, $g:ident, $h:ident, $k:expr, $w:expr) => {
            let t1 = $h
                .wrapping_add($e.rotate_right(6) ^ $e.rotate_right(11) ^ $e.rotate_right(25))
                .wrapping_add(($e & $f) ^ (!$e & $g))
                .wrapping_add($k)
                .wrapping_add($w);
            let t2 = ($a.rotate_right(2) ^ $a.rotate_right(13) ^ $a.rotate_right(22))
                .wrapping_add(($a & $b) ^ ($a & $c) ^ ($b & $c));
            $d = $d.wrapping_add(t1);
            $h = t1.wrapping_add(t2);
        };
    }
    macro_rules! schedule {
        ($i:expr) => {{
            let w15 = w[($i + 1) & 15];
            let w2 = w[($i + 14) & 15];
            let s0 = w15.rotate_right(7) ^ w15.rotate_right(18) ^ (w15 >> 3);
            let s1 = w2.rotate_right(17) ^ w2.rotate_right(19) ^ (w2 >> 10);
            w[$i & 15] = w[$i & 15]
                .wrapping_add(s0)
                .wrapping_add(w[($i + 9) & 15])
                .wrapping_add(s1);
            w[$i & 15]
        }};
    }
    macro_rules! eight {
        ($base:expr, $word:ident) => {
            round!(a, b, c, d, e, f, g, h, K[$base], $word!($base));
            round!(h, a, b, c, d, e, f, g, K[$base + 1], $word!($base + 1));
            round!(g, h, a, b, c, d, e, f, K[$base + 2], $word!($base + 2));
            round!(f, g, h, a, b, c, d, e, K[$base + 3], $word!($base + 3));
            round!(e, f, g, h, a, b, c, d, K[$base + 4], $word!($base + 4));
            round!(d, e, f, g, h, a, b, c, K[$base + 5], $word!($base + 5));
            round!(c, d, e, f, g, h, a, b, K[$base + 6], $word!($base + 6));
            round!(b, c, d, e, f, g, h, a, K[$base + 7], $word!($base + 7));
        };
    }
    macro_rules! given {
        ($i:expr) => {
            w[$i & 15]
        };
    }
    eight!(0, given);
    eight!(8, given);
    for base in [16, 24, 32, 40, 48, 56] {
        eight!(base, schedule);
    }
    for (s, v) in state.iter_mut().zip([a, b, c, d, e, f, g, h]) {
        *s = s.wrapping_add(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(data: &[u8]) -> String {
        let mut h = Sha256::new();
        h.update(data);
        hex(&h.finish())
    }

    #[test]
    fn the_standard_test_vectors_hash_right() {
        assert_eq!(
            digest(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            digest(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            digest(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        );
        assert_eq!(
            digest(&vec![b'a'; 1_000_000]),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"
        );
    }

    #[test]
    fn the_portable_rounds_agree_with_the_accelerated_ones() {
        let data: Vec<u8> = (0..64 * 50u32).map(|i| (i * 131 % 256) as u8).collect();
        let mut fast = H0;
        compress_blocks(&mut fast, &data);
        let mut portable = H0;
        for block in data.chunks_exact(64) {
            compress(&mut portable, block.try_into().unwrap());
        }
        assert_eq!(fast, portable);
    }

    #[test]
    fn pieces_of_any_size_hash_like_the_whole() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 31 % 251) as u8).collect();
        let whole = digest(&data);
        for step in [1, 3, 55, 56, 63, 64, 65, 127, 999] {
            let mut h = Sha256::new();
            for piece in data.chunks(step) {
                h.update(piece);
            }
            assert_eq!(hex(&h.finish()), whole, "pieces of {step}");
        }
        // Lengths around the padding boundary.
        for len in 54..=66 {
            let mut h = Sha256::new();
            h.update(&data[..len]);
            let one = hex(&h.finish());
            let mut h = Sha256::new();
            h.update(&data[..len / 2]);
            h.update(&data[len / 2..len]);
            assert_eq!(hex(&h.finish()), one, "length {len}");
        }
    }
}

#[cfg(test)]
mod speed {
    /// `cargo test --release -p persistent-app-format -- --ignored --nocapture sha256`: the digest's
    /// throughput at the shipped size profile.
    #[test]
    #[ignore]
    fn measure_sha256_throughput() {
        let data = vec![0x5au8; 64 << 20];
        let t0 = std::time::Instant::now();
        let mut h = super::Sha256::new();
        h.update(&data);
        let d = h.finish();
        let s = t0.elapsed().as_secs_f64();
        eprintln!("sha256: {:.0} MiB/s ({:02x})", 64.0 / s, d[0]);
    }
}
