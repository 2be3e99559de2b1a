//! The connection table's keyed hash: a folded multiply (the 128-bit product of two 64-bit
//! words, its halves xored) per 64-bit word of the key, under three secret random words.
//!
//! Why not SipHash (`RandomState`): a lookup hashes one key of two to five words, and
//! SipHash-1-3 through the derived `Hash` spent about as long on it as the rest of the hit.
//! A folded multiply per word costs a few cycles.
//!
//! Why it is still safe against chosen keys: the state starts at a secret word and every
//! word of the key is mixed into it by a multiply with a second secret word, so which keys
//! share a home slot, a tag or a shard depends on the secrets, which never leave the
//! process (the same construction as foldhash and ahash's fallback). Unlike SipHash it makes
//! no claim against an attacker who can observe hash values, and none is exposed: not in
//! counters, not in timing an attacker can isolate from the network's noise. The table's
//! load factor (at most 0.8, `table.rs`) and the never-replied eviction bound the rest.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

/// Builds [`FoldHasher`]s with secret words drawn once, at construction, from the
/// standard library's random source (the one `RandomState` seeds SipHash from).
#[derive(Debug, Clone)]
pub struct FlowHashBuilder {
    seed: u64,
    multiplier: u64,
    finish: u64,
}

impl FlowHashBuilder {
    /// Fresh secret words, different for every table.
    pub fn new() -> FlowHashBuilder {
        // SipHash outputs under a fresh random key: unpredictable words without a new
        // source of randomness.
        let random = RandomState::new();
        FlowHashBuilder::with_words(
            random.hash_one(1u64),
            random.hash_one(2u64),
            random.hash_one(3u64),
        )
    }

    /// Fixed words, for tests that need a reproducible layout.
    pub fn with_words(seed: u64, multiplier: u64, finish: u64) -> FlowHashBuilder {
        FlowHashBuilder {
            seed,
            // An odd multiplier loses no bit of the low half of the product.
            multiplier: multiplier | 1,
            finish: finish | 1,
        }
    }
}

impl Default for FlowHashBuilder {
    fn default() -> Self {
        FlowHashBuilder::new()
    }
}

impl BuildHasher for FlowHashBuilder {
    type Hasher = FoldHasher;

    #[inline]
    fn build_hasher(&self) -> FoldHasher {
        FoldHasher {
            state: self.seed,
            multiplier: self.multiplier,
            finish: self.finish,
        }
    }
}

/// One hashing in progress; see the module documentation.
#[derive(Debug, Clone)]
pub struct FoldHasher {
    state: u64,
    multiplier: u64,
    finish: u64,
}

#[inline]
fn folded_multiply(a: u64, b: u64) -> u64 {
    let product = u128::from(a) * u128::from(b);
    (product as u64) ^ ((product >> 64) as u64)
}

impl Hasher for FoldHasher {
    #[inline]
    fn write_u64(&mut self, word: u64) {
        // The rotation keeps a word equal to the state from cancelling it to zero, after
        // which every later word would be multiplied from a known start.
        self.state = folded_multiply(self.state.rotate_left(23) ^ word, self.multiplier);
    }

    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in chunks.by_ref() {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        let mut word = [0u8; 8];
        word[..rest.len()].copy_from_slice(rest);
        // The length tells "ab" + "" from "a" + "b".
        self.write_u64(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 59));
    }

    #[inline]
    fn write_u8(&mut self, n: u8) {
        self.write_u64(u64::from(n));
    }

    #[inline]
    fn write_u16(&mut self, n: u16) {
        self.write_u64(u64::from(n));
    }

    #[inline]
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    #[inline]
    fn write_u128(&mut self, n: u128) {
        self.write_u64(n as u64);
        self.write_u64((n >> 64) as u64);
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        // Both halves of the result depend on every bit of the state: the table takes its
        // slot from the low 32 bits, the shard from the bits above, the tag from the top 7.
        folded_multiply(self.state, self.finish)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn equal_input_hashes_equal_and_the_key_changes_everything() {
        let one = FlowHashBuilder::with_words(1, 2, 3);
        let again = FlowHashBuilder::with_words(1, 2, 3);
        let other = FlowHashBuilder::with_words(4, 2, 3);
        let inputs = [0u64, 1, 2, u64::MAX, 0x0102_0304_0506_0708];
        for input in inputs {
            assert_eq!(one.hash_one(input), again.hash_one(input));
            assert_ne!(one.hash_one(input), other.hash_one(input), "input {input}");
        }
    }

    #[test]
    fn fresh_builders_draw_different_words() {
        let hashes: HashSet<u64> = (0..16)
            .map(|_| FlowHashBuilder::new().hash_one(7u64))
            .collect();
        assert_eq!(hashes.len(), 16);
    }

    #[test]
    fn byte_strings_of_different_split_or_length_differ() {
        let builder = FlowHashBuilder::with_words(9, 10, 11);
        let hash = |parts: &[&[u8]]| {
            let mut hasher = builder.build_hasher();
            for part in parts {
                hasher.write(part);
            }
            hasher.finish()
        };
        assert_ne!(hash(&[b"ab"]), hash(&[b"a", b"b"]));
        assert_ne!(hash(&[b"a"]), hash(&[b"a\0"]));
        assert_ne!(hash(&[b"12345678"]), hash(&[b"1234567", b"8"]));
    }

    #[test]
    fn sequential_words_spread_over_slots_shards_and_tags() {
        // Keys an attacker can enumerate (consecutive ports) must not pile into few homes:
        // each range the table reads from should see nearly every value.
        // Words as random as the ones `new` draws (digits of pi).
        let builder = FlowHashBuilder::with_words(
            0x243F_6A88_85A3_08D3,
            0x1319_8A2E_0370_7344,
            0xA409_3822_299F_31D0,
        );
        let mut low = HashSet::new();
        let mut shard = HashSet::new();
        let mut tag = HashSet::new();
        for word in 0..4096u64 {
            let hash = builder.hash_one(word);
            low.insert((u64::from(hash as u32) * 4096) >> 32);
            shard.insert((hash >> 32) & 255);
            tag.insert(hash >> 57);
        }
        // Balls into bins: 4096 into 4096 fill 2589 on average (standard deviation about
        // 20), into 256 and 128 all of them.
        assert!(low.len() > 2450, "{} of 4096 slots", low.len());
        assert_eq!(shard.len(), 256);
        assert_eq!(tag.len(), 128);
    }
}
