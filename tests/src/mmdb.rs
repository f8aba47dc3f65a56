//! A minimal writer of MaxMind DB files (format 2.0, <https://maxmind.github.io/MaxMind-DB/>),
//! so the geolocation tests build their own small databases instead of shipping licensed ones.
//!
//! It writes what the format requires and nothing more: an IPv6 search tree with 24-bit records
//! (IPv4 networks live under `::/96`, where readers look IPv4 addresses up), a data section
//! with one record per network and no pointers, and the metadata. Networks are inserted in
//! order; a narrower network inside a broader one overrides it there, so insert broad first.

use std::net::IpAddr;

/// A value of the data section: the types the GeoLite2 records and the metadata use.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    U16(u16),
    U32(u32),
    U64(u64),
    Map(Vec<(String, Value)>),
    Array(Vec<Value>),
}

impl Value {
    pub fn map<'a>(pairs: impl IntoIterator<Item = (&'a str, Value)>) -> Value {
        Value::Map(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    }

    pub fn str(s: &str) -> Value {
        Value::Str(s.to_owned())
    }
}

/// A GeoLite2-Country style record: `{"country": {"iso_code": code}}`.
pub fn country(code: &str) -> Value {
    Value::map([("country", Value::map([("iso_code", Value::str(code))]))])
}

/// A GeoLite2-ASN style record.
pub fn asn(number: u32, organization: &str) -> Value {
    Value::map([
        ("autonomous_system_number", Value::U32(number)),
        ("autonomous_system_organization", Value::str(organization)),
    ])
}

/// What a record of the search tree points at.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Record {
    Empty,
    Node(usize),
    Data(usize),
}

/// A database under construction.
#[derive(Debug)]
pub struct Writer {
    database_type: String,
    nodes: Vec<[Record; 2]>,
    values: Vec<Value>,
}

const RECORD_SIZE: usize = 24;
const MAX_RECORD: usize = (1 << RECORD_SIZE) - 1;

impl Writer {
    /// An empty database of this type (e.g. `GeoLite2-Country`, `GeoLite2-ASN`).
    pub fn new(database_type: &str) -> Writer {
        Writer {
            database_type: database_type.to_owned(),
            nodes: vec![[Record::Empty; 2]],
            values: Vec::new(),
        }
    }

    /// Maps the network `cidr` (`192.0.2.0/24`, `2001:db8::/32`) to `value`.
    pub fn insert(&mut self, cidr: &str, value: Value) -> &mut Writer {
        let (addr, len) = cidr.split_once('/').expect("a network is address/length");
        let addr: IpAddr = addr.parse().expect("a network address");
        let len: u32 = len.parse().expect("a prefix length");
        let (bits, len) = match addr {
            IpAddr::V4(v4) => {
                assert!(len <= 32, "{cidr}");
                (u128::from(u32::from(v4)), 96 + len)
            }
            IpAddr::V6(v6) => {
                assert!(len <= 128, "{cidr}");
                (u128::from(v6), len)
            }
        };
        assert!(len > 0, "a network covering everything is not supported");
        self.values.push(value);
        let data = Record::Data(self.values.len() - 1);
        let mut node = 0;
        for depth in 0..len {
            let side = usize::from(bits >> (127 - depth) & 1 == 1);
            if depth == len - 1 {
                self.nodes[node][side] = data;
                break;
            }
            node = match self.nodes[node][side] {
                Record::Node(next) => next,
                // Split an empty or broader record: both halves keep what it held.
                held => {
                    self.nodes.push([held; 2]);
                    let next = self.nodes.len() - 1;
                    self.nodes[node][side] = Record::Node(next);
                    next
                }
            };
        }
        self
    }

    /// The database file.
    pub fn build(&self) -> Vec<u8> {
        let node_count = self.nodes.len();
        let mut data = Vec::new();
        let offsets: Vec<usize> = self
            .values
            .iter()
            .map(|v| {
                let at = data.len();
                encode(v, &mut data);
                at
            })
            .collect();
        let mut out = Vec::new();
        for node in &self.nodes {
            for record in node {
                let n = match *record {
                    Record::Empty => node_count,
                    Record::Node(i) => i,
                    Record::Data(i) => node_count + 16 + offsets[i],
                };
                assert!(n <= MAX_RECORD, "too large for 24-bit records");
                out.extend_from_slice(&(n as u32).to_be_bytes()[1..]);
            }
        }
        out.extend_from_slice(&[0; 16]);
        out.extend_from_slice(&data);
        out.extend_from_slice(b"\xAB\xCD\xEFMaxMind.com");
        let metadata = Value::map([
            ("binary_format_major_version", Value::U16(2)),
            ("binary_format_minor_version", Value::U16(0)),
            ("build_epoch", Value::U64(1_700_000_000)),
            ("database_type", Value::str(&self.database_type)),
            (
                "description",
                Value::map([("en", Value::str("proxyharvest test database"))]),
            ),
            ("ip_version", Value::U16(6)),
            ("languages", Value::Array(vec![Value::str("en")])),
            ("node_count", Value::U32(node_count as u32)),
            ("record_size", Value::U16(RECORD_SIZE as u16)),
        ]);
        encode(&metadata, &mut out);
        out
    }
}

/// Appends the data-section encoding of `v`: a control byte (type in the top three bits, size in
/// the low five, extended types in a following byte), then the payload.
fn encode(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Str(s) => {
            control(2, s.len(), out);
            out.extend_from_slice(s.as_bytes());
        }
        Value::U16(n) => unsigned(5, u64::from(*n), out),
        Value::U32(n) => unsigned(6, u64::from(*n), out),
        Value::U64(n) => unsigned(9, *n, out),
        Value::Map(pairs) => {
            control(7, pairs.len(), out);
            for (k, v) in pairs {
                encode(&Value::Str(k.clone()), out);
                encode(v, out);
            }
        }
        Value::Array(items) => {
            control(11, items.len(), out);
            for item in items {
                encode(item, out);
            }
        }
    }
}

/// An unsigned integer in as few big-endian bytes as it needs.
fn unsigned(kind: u8, n: u64, out: &mut Vec<u8>) {
    let bytes = n.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    control(kind, 8 - skip, out);
    out.extend_from_slice(&bytes[skip..]);
}

fn control(kind: u8, size: usize, out: &mut Vec<u8>) {
    let (first, extended) = if kind <= 7 {
        (kind << 5, None)
    } else {
        (0, Some(kind - 7))
    };
    let (size_bits, tail): (u8, Vec<u8>) = match size {
        0..29 => (size as u8, vec![]),
        29..285 => (29, vec![(size - 29) as u8]),
        285..65_821 => (30, ((size - 285) as u16).to_be_bytes().to_vec()),
        _ => (31, ((size - 65_821) as u32).to_be_bytes()[1..].to_vec()),
    };
    out.push(first | size_bits);
    out.extend(extended);
    out.extend(tail);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_encode_as_the_spec_examples() {
        let enc = |v: Value| {
            let mut out = Vec::new();
            encode(&v, &mut out);
            out
        };
        assert_eq!(enc(Value::str("en")), [0x42, b'e', b'n']);
        assert_eq!(enc(Value::U16(0)), [0xA0]);
        assert_eq!(enc(Value::U32(64_500)), [0xC2, 0xFB, 0xF4]);
        assert_eq!(enc(Value::U64(1)), [0x01, 0x02, 0x01]);
        assert_eq!(enc(Value::Array(vec![])), [0x00, 0x04]);
        assert_eq!(
            enc(Value::map([("a", Value::U16(1))])),
            [0xE1, 0x41, b'a', 0xA1, 0x01]
        );
        let long = "x".repeat(300);
        assert_eq!(enc(Value::Str(long))[..3], [0x5E, 0x00, 0x0F]);
    }

    #[test]
    fn a_narrower_network_splits_a_broader_one() {
        let mut w = Writer::new("test");
        w.insert("10.0.0.0/8", country("DE"));
        let before = w.nodes.len();
        w.insert("10.1.0.0/16", country("NZ"));
        // 96 bits of ::/96 plus 8 of 10/8, then 8 more for 10.1/16.
        assert_eq!(before, 96 + 7 + 1);
        assert_eq!(w.nodes.len(), before + 8);
        assert!(w.nodes.iter().flatten().any(|r| *r == Record::Data(0)));
        assert!(w.build().ends_with(&[0xA1, 24]));
    }
}
