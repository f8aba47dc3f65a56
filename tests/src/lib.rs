//! Loopback test servers shared by the integration tests, the benchmarks and the demo:
//! a farm of proxies of every kind ([`farm`]), judges in every format ([`judge`]) and a
//! server of proxy lists ([`sources`]), and small MaxMind-format databases ([`mmdb`]). Everything binds 127.0.0.0/8 only.

pub mod farm;
pub mod judge;
pub mod mmdb;
pub mod sources;
pub mod stack;
