//! The short fuzz run of `make test`: every fuzz target over its committed corpus
//! (`fuzz/corpus/<target>/`) and 400 deterministic mutations of each entry (bit flips, byte
//! inserts, truncations, splices with another entry). `make fuzz` runs the same targets
//! coverage-guided with libFuzzer for 10 minutes each.

use std::path::Path;

use twofa_tests::fuzz::TARGETS;

/// xorshift64*: the same mutations on every run, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..=rng.below(4) {
        match rng.below(5) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 => {
                let i = rng.below(v.len() + 1);
                let interesting = [0u8, 0xFF, b'"', b'\\', b'{', b'}', b'%', b'&', b'=', b'|', 0xC3, 0x80];
                v.insert(i, interesting[rng.below(interesting.len())]);
            }
            2 if !v.is_empty() => v.truncate(rng.below(v.len())),
            3 => {
                let i = rng.below(v.len() + 1);
                let j = rng.below(other.len() + 1);
                v.splice(i..i, other[j..].iter().copied().take(32));
            }
            _ => {
                if let Some(i) = (!v.is_empty()).then(|| rng.below(v.len())) {
                    v.remove(i);
                }
            }
        }
    }
    v
}

#[test]
fn every_fuzz_target_survives_its_corpus_and_mutations_of_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("fuzz/corpus");
    for (name, target) in TARGETS {
        let mut corpus: Vec<Vec<u8>> = std::fs::read_dir(root.join(name))
            .unwrap_or_else(|e| panic!("fuzz/corpus/{name}: {e}"))
            .map(|e| std::fs::read(e.unwrap().path()).unwrap())
            .collect();
        corpus.sort();
        assert!(!corpus.is_empty(), "fuzz/corpus/{name} is empty");
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for (i, input) in corpus.iter().enumerate() {
            target(input);
            let other = &corpus[(i + 1) % corpus.len()];
            for _ in 0..400 {
                target(&mutate(&mut rng, input, other));
            }
        }
    }
}
