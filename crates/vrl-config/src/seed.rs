//! Seeds as full `u64`s in TOML, whose integers are `i64`: `#[serde(with = "vrl_config::seed")]` on a
//! `u64` field, [`seeds`] on a `Vec<u64>`.
//!
//! A seed is read from a TOML integer ≥ 0 or from a string of decimal digits up to `u64::MAX` (what
//! `--set seed=18446744073709551615` gives, since that is not a TOML integer), and written as a
//! TOML integer when it fits an `i64`, else as a string, so that a resolved configuration is written
//! back and read again unchanged.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Config {
//!     #[serde(with = "vrl_config::seed")]
//!     seed: u64,
//! }
//!
//! let c: Config = toml::from_str("seed = \"18446744073709551615\"").unwrap();
//! assert_eq!(c.seed, u64::MAX);
//! assert_eq!(toml::to_string(&Config { seed: 7 }).unwrap(), "seed = 7\n");
//! ```

use std::fmt;

use serde::de::{self, Deserializer, Unexpected, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// What a seed must be, as error messages say it.
pub const EXPECTED: &str = "a seed: an integer from 0 to 18446744073709551615";

/// Writes `seed` as an integer when it fits an `i64`, else as a string of its decimal digits.
///
/// # Errors
/// Those of the serializer.
pub fn serialize<S: Serializer>(seed: &u64, serializer: S) -> Result<S::Ok, S::Error> {
    match i64::try_from(*seed) {
        Ok(small) => serializer.serialize_i64(small),
        Err(_) => serializer.collect_str(seed),
    }
}

/// Reads a seed from an integer ≥ 0 or a string of decimal digits up to `u64::MAX`.
///
/// # Errors
/// Anything else, with a message that ends in [`EXPECTED`].
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    deserializer.deserialize_any(SeedVisitor)
}

/// The LibTorch seed of `seed`: the same 64 bits as an `i64`, which is what `tch::manual_seed` takes
/// and LibTorch turns back into the `uint64_t` it seeds with. Seeds up to `i64::MAX` are unchanged;
/// larger ones become negative, so every `u64` is a distinct seed.
pub fn to_torch(seed: u64) -> i64 {
    i64::from_ne_bytes(seed.to_ne_bytes())
}

struct SeedVisitor;

impl Visitor<'_> for SeedVisitor {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(EXPECTED)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        Ok(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
        u64::try_from(v).map_err(|_| E::invalid_value(Unexpected::Signed(v), &self))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
        let digits = !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit());
        match v.parse::<u64>() {
            Ok(seed) if digits => Ok(seed),
            _ => Err(E::invalid_value(Unexpected::Str(v), &self)),
        }
    }
}

/// One seed, read and written as the module's functions do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
struct Seed(#[serde(with = "crate::seed")] u64);

/// A list of seeds (`#[serde(with = "vrl_config::seed::seeds")]` on a `Vec<u64>`), each read and
/// written as [`deserialize`] and [`serialize`] do; a bad element is reported at its index.
pub mod seeds {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::Seed;

    /// Writes each seed as [`super::serialize`] does.
    ///
    /// # Errors
    /// Those of the serializer.
    pub fn serialize<S: Serializer>(seeds: &[u64], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(seeds.iter().map(|&s| Seed(s)))
    }

    /// Reads a list of seeds as [`super::deserialize`] reads one.
    ///
    /// # Errors
    /// Anything but a list, and the first element that is not a seed.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u64>, D::Error> {
        Ok(Vec::<Seed>::deserialize(deserializer)?.into_iter().map(|s| s.0).collect())
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::*;
    use crate::{ExperimentFile, Override};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Cfg {
        #[serde(with = "crate::seed")]
        seed: u64,
        #[serde(with = "crate::seed::seeds", default)]
        seeds: Vec<u64>,
        threads: usize,
    }

    fn file() -> ExperimentFile {
        let text =
            "[experiment]\nname = 't'\ndescription = 'd'\n[config]\nseed = 5\nseeds = [1, 2]\nthreads = 0\n";
        ExperimentFile::parse(text, "t.toml").unwrap()
    }

    fn resolve(overrides: &[&str]) -> Result<Cfg, crate::ConfigError> {
        let overrides: Vec<Override> = overrides.iter().map(|o| Override::parse(o).unwrap()).collect();
        let resolved = file().resolve::<Cfg>(None, &overrides)?;
        let again: Cfg = toml::from_str(&resolved.toml).expect("the written configuration reads back");
        assert_eq!(again, resolved.config, "round trip of {}", resolved.toml);
        Ok(resolved.config)
    }

    #[test]
    fn every_u64_is_a_seed_through_set() {
        assert_eq!(resolve(&[]).unwrap().seed, 5);
        assert_eq!(resolve(&["seed=18446744073709551615"]).unwrap().seed, u64::MAX);
        assert_eq!(resolve(&["seed=9223372036854775808"]).unwrap().seed, 1 << 63);
        assert_eq!(resolve(&["seed=9223372036854775807"]).unwrap().seed, i64::MAX as u64);
        assert_eq!(resolve(&["seed=\"42\""]).unwrap().seed, 42);
        assert_eq!(resolve(&["seed=0"]).unwrap().seed, 0);
    }

    #[test]
    fn small_seeds_are_written_as_integers_large_ones_as_strings() {
        let text = file().resolve::<Cfg>(None, &[]).unwrap().toml;
        assert!(text.contains("seed = 5\n") && text.contains("seeds = [\n    1,\n    2,\n]"), "{text}");
        let o = [Override::parse("seed=18446744073709551615").unwrap()];
        let text = file().resolve::<Cfg>(None, &o).unwrap().toml;
        assert!(text.contains("seed = \"18446744073709551615\""), "{text}");
    }

    #[test]
    fn anything_else_is_refused_with_the_key_and_the_range() {
        for bad in [
            "seed=-1",
            "seed=18446744073709551616",
            "seed=1.5",
            "seed=abc",
            "seed=\"+7\"",
            "seed=\"\"",
            "seed=true",
            "seed=[1]",
        ] {
            let e = resolve(&[bad]).unwrap_err().to_string();
            assert!(e.contains("`seed`") && e.contains(EXPECTED), "{bad}: {e}");
        }
    }

    #[test]
    fn lists_of_seeds_take_large_seeds_and_name_a_bad_element() {
        let c = resolve(&["seeds=[0, \"18446744073709551615\", 3]"]).unwrap();
        assert_eq!(c.seeds, vec![0, u64::MAX, 3]);
        let e = resolve(&["seeds=[0, -2]"]).unwrap_err().to_string();
        assert!(e.contains("`seeds[1]`") && e.contains(EXPECTED), "{e}");
        let e = resolve(&["seeds=7"]).unwrap_err().to_string();
        assert!(e.contains("`seeds`"), "{e}");
    }

    #[test]
    fn torch_seeds_keep_all_64_bits() {
        assert_eq!(to_torch(0), 0);
        assert_eq!(to_torch(12345), 12345);
        assert_eq!(to_torch(i64::MAX as u64), i64::MAX);
        assert_eq!(to_torch(u64::MAX), -1);
        assert_eq!(to_torch(1 << 63), i64::MIN);
    }
}
