//! ringwire-client (under construction).
