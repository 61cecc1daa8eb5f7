//! FNV-1a (64 bit): a hash that is stable across builds and Rust versions (unlike
//! `DefaultHasher`), for values that are stored on the cluster or compared across restarts.

pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    pub fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    /// A string with its length first, so that no two sequences of strings hash alike by
    /// running into each other.
    pub fn text(&mut self, text: &str) {
        self.write(&(text.len() as u64).to_le_bytes());
        self.write(text.as_bytes());
    }

    pub fn finish(&self) -> u64 {
        self.0
    }
}

/// FNV-1a of a string.
pub fn hash_str(text: &str) -> u64 {
    let mut fnv = Fnv::default();
    fnv.write(text.as_bytes());
    fnv.finish()
}
