//! Random identifiers in the shapes AWS uses (request ids, trace ids, event ids).
//!
//! Nothing here needs to be globally unique in the cryptographic sense: the ids only have to be
//! distinct within one run of the local runtime and look like what the functions see on Lambda.

use std::time::{SystemTime, UNIX_EPOCH};

use rand::Rng;

/// `n` random lowercase hex digits.
pub fn hex(n: usize) -> String {
    let mut rng = rand::rng();
    (0..n)
        .map(|_| char::from_digit(rng.random_range(0..16), 16).expect("digit below 16"))
        .collect()
}

/// A random (version 4) UUID in its usual 8-4-4-4-12 text form, as Lambda uses for request ids
/// and EventBridge for event ids.
pub fn uuid() -> String {
    let variant = char::from_digit(rand::rng().random_range(8..12), 16).expect("digit below 16");
    format!(
        "{}-{}-4{}-{variant}{}-{}",
        hex(8),
        hex(4),
        hex(3),
        hex(3),
        hex(12)
    )
}

/// An X-Ray trace header for a new, unsampled trace: `Root=1-<epoch hex>-<24 hex>;Sampled=0`.
pub fn trace_id() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("Root=1-{secs:08x}-{};Parent={};Sampled=0", hex(24), hex(16))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_has_the_version_4_shape() {
        let id = uuid();
        let groups: Vec<&str> = id.split('-').collect();
        assert_eq!(
            groups.iter().map(|g| g.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(groups[2].starts_with('4'), "{id}");
        assert!(matches!(&groups[3][..1], "8" | "9" | "a" | "b"), "{id}");
        assert!(
            id.chars()
                .all(|c| c == '-' || c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_ne!(uuid(), id);
    }

    #[test]
    fn trace_id_has_the_xray_shape() {
        let trace = trace_id();
        assert!(trace.starts_with("Root=1-"), "{trace}");
        assert!(trace.ends_with(";Sampled=0"), "{trace}");
        let root = trace
            .trim_start_matches("Root=")
            .split(';')
            .next()
            .expect("root");
        assert_eq!(root.len(), 1 + 1 + 8 + 1 + 24, "{root}");
    }
}
