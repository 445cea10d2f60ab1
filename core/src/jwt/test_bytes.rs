//! Deterministic test randomness for the signature modules' agreement tests: SHA-256 of (label,
//! case, counter), so a failing case is named by its label and number and can be replayed.

use sha2::{Digest, Sha256};

pub(crate) struct Bytes {
    pub label: &'static str,
    pub case: u32,
    pub counter: u32,
}

impl Bytes {
    pub fn new(label: &'static str, case: u32) -> Self {
        Self {
            label,
            case,
            counter: 0,
        }
    }

    pub fn next(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            let block = Sha256::new()
                .chain_update(self.label)
                .chain_update(self.case.to_be_bytes())
                .chain_update(self.counter.to_be_bytes())
                .finalize();
            self.counter += 1;
            out.extend_from_slice(&block);
        }
        out.truncate(len);
        out
    }

    pub fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0; N];
        out.copy_from_slice(&self.next(N));
        out
    }
}
