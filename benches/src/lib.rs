//! ringwire-benches (under construction).
