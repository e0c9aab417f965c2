//! Helpers shared by the integration tests: reproducible random data without a dependency.
//!
//! Each test binary compiles this module on its own and uses part of it, hence the allow.
#![allow(dead_code)]

/// xorshift64*: the generator of the kernel-versus-scalar tests.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// Uniform in [0, 1) with 24 bits.
    pub fn uniform(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
    /// Roughly normal (sum of 12 uniforms), bounded by ±6: no value far enough out to need care.
    pub fn normal(&mut self) -> f32 {
        (0..12).map(|_| self.uniform()).sum::<f32>() - 6.0
    }
    pub fn bytes(&mut self, out: &mut [u8]) {
        out.iter_mut().for_each(|b| *b = self.next() as u8);
    }
}

/// xorshift32 with Box-Muller normals: the generator of the format and matmul tests (true tails).
pub struct Rng32(pub u32);

impl Rng32 {
    pub fn next_u32(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        self.0
    }
    /// Uniform in [0, 1) with 24 bits.
    pub fn uniform(&mut self) -> f32 {
        (self.next_u32() >> 8) as f32 / (1u32 << 24) as f32
    }
    pub fn normal(&mut self) -> f32 {
        let u1 = self.uniform().max(1e-12);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
    }
    /// Finite fp16 bits of any magnitude, subnormals and zeros included.
    pub fn fp16(&mut self) -> [u8; 2] {
        loop {
            let h = self.next_u32() as u16;
            if h & 0x7c00 != 0x7c00 {
                return h.to_le_bytes();
            }
        }
    }
}
