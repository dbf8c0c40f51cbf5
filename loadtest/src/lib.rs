//! ringwire-loadtest: the load harness for ringwire's side-by-side server benchmarks.
//!
//! Binaries: `loadgen` (the mio/epoll load generator), `peer-fastwebsockets` and
//! `peer-tungstenite` (single-threaded peer echo/broadcast servers), and `bench-all`
//! (runs every scenario against every server and writes the results). `run.sh` builds
//! everything in release and starts `bench-all`. See `loadtest/README.md`.

pub mod deflate;
pub mod peer;
pub mod procfs;
pub mod report;
pub mod tls;
pub mod wire;
