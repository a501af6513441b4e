//! The hashing trick, as a stable contract between training and serving:
//! XXH3-64 with an explicit seed over `field name, 0x1F, value` bytes, bucket =
//! hash mod buckets. Never `std::hash` (not stable across versions or machines).
//! [`HASH_VERSION`] is stored in features.json; change it if these bytes ever change.
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// Version of the byte layout hashed by [`hash_value`].
pub const HASH_VERSION: u32 = 1;
/// Unit separator between the field name and the value.
pub const SEPARATOR: u8 = 0x1F;

/// XXH3-64 of raw bytes with a seed.
#[inline]
pub fn xxh3(bytes: &[u8], seed: u64) -> u64 {
    xxh3_64_with_seed(bytes, seed)
}

/// The hash of `value` in `field`: XXH3-64 of `field, 0x1F, value`.
#[inline]
pub fn hash_value(field: &str, value: &str, seed: u64, buf: &mut Vec<u8>) -> u64 {
    buf.clear();
    buf.extend_from_slice(field.as_bytes());
    buf.push(SEPARATOR);
    buf.extend_from_slice(value.as_bytes());
    xxh3(buf, seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The golden vectors of DESIGN.md (seed 42), which any other
    /// implementation of the contract (a Python client, a Spark job) must
    /// reproduce.
    #[test]
    fn golden_vectors() {
        assert_eq!(xxh3(b"C1=68fd1e64", 42), 742381394605023126);
        assert_eq!(xxh3(b"", 42), 12693748630217917650);
        assert_eq!(xxh3(b"user_id=123456789", 42), 2704431033796480568);
    }

    #[test]
    fn field_and_value_are_separated() {
        let mut buf = Vec::new();
        let a = hash_value("C1", "68fd1e64", 42, &mut buf);
        let mut bytes = b"C1".to_vec();
        bytes.push(0x1F);
        bytes.extend_from_slice(b"68fd1e64");
        assert_eq!(a, xxh3(&bytes, 42));
        // "ab" + "c" and "a" + "bc" must not collide by construction.
        assert_ne!(
            hash_value("ab", "c", 42, &mut buf),
            hash_value("a", "bc", 42, &mut buf)
        );
        assert_ne!(a, hash_value("C1", "68fd1e64", 43, &mut buf));
    }
}
