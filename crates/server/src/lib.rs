//! ringwire-server (under construction).
